"""Code written for the original package runs unchanged (issue 25): its helpers, its fp16 wrapper, saved
folders loading the way they were saved, and what the original's own unit tests exercise."""
import copy
import inspect
import math
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import TINY_PARAMS, fill_hub_cache
from fakes import FakeTokenizer, make_image

import rudolph
from rudolph import pipelines
from rudolph.api import DEFAULT_SPC_TOKENS, ruDolphApi
from rudolph.errors import ConfigError, WeightsNotFoundError
from rudolph.finetune import freeze  # not rudolph.finetune.freeze: importing that submodule shadows the export
from rudolph.image_prompts import ImagePrompts
from rudolph.model import MODELS, FP16Module, get_rudolph_model, quant, ruDolphModel
from rudolph.model import utils as model_utils
from rudolph.model.fp16 import fp16_to_fp32, fp32_to_fp16, unwrap_model
from rudolph.model.image_attention import get_col_mask, get_conv_mask, get_row_mask
from rudolph.model.utils import get_attention_mask
from rudolph.pretrained.components import Components
from rudolph.pretrained.folder import read_config
from rudolph.vae import get_vae
from rudolph.vae.image import preprocess_image


# ------------------------------------------------------------------------- rudolph.model.utils
def test_get_attention_mask_of_the_released_form_is_causal():
    mask = get_attention_mask(3, 2, 2, 1, 'cpu')
    assert mask.shape == (3, 1, 7, 7) and mask.dtype == torch.float32
    assert torch.equal(mask[1, 0], torch.tril(torch.ones(7, 7)))
    assert torch.equal(get_attention_mask(bs=3, l_text_tokens=2, image_tokens_per_dim=2, r_text_tokens=1,
                                          device='cpu'), mask)


def test_get_attention_mask_of_the_earlier_form_blocks_rows_after_the_first_right_text_pad():
    masks = torch.tensor([[1, 1, 0], [0, 1, 1], [1, 1, 1]])  # right text of 3 tokens, 1 = keep
    mask = get_attention_mask(masks, 3, 2, 2, 3, 'cpu')
    causal = torch.tril(torch.ones(9, 9))
    first_blocked = causal.clone()
    first_blocked[2 + 4 + 2:] = 0  # the first zero of row 0 is at index 2: rows from L + N2 + 2 on
    assert torch.equal(mask[0, 0], first_blocked)
    assert torch.equal(mask[1, 0], causal)  # a zero at index 0 blocks nothing (the original's `if index`)
    assert torch.equal(mask[2, 0], causal)  # no zero: argmin 0, nothing blocked
    with pytest.raises(ConfigError, match=r'masks must be \[bs=2'):
        get_attention_mask(masks, 2, 2, 2, 3, 'cpu')


def test_model_utils_helpers():
    assert model_utils.exists(0) and not model_utils.exists(None)
    assert model_utils.is_empty(torch.zeros(0, 3)) and not model_utils.is_empty(torch.zeros(1))
    assert model_utils.divide(12, 4) == 3
    with pytest.raises(ConfigError, match='10 is not divisible by 4'):
        model_utils.ensure_divisibility(10, 4)
    parts = model_utils.split_tensor_along_last_dim(torch.arange(12.).view(2, 6), 3, contiguous_split_chunks=True)
    assert len(parts) == 3 and torch.equal(parts[1], torch.tensor([[2., 3.], [8., 9.]]))
    torch.manual_seed(0)
    weight = model_utils.init_method_normal(0.5)(torch.empty(4000))
    assert abs(float(weight.std()) - 0.5) < 0.03 and abs(float(weight.mean())) < 0.03


def test_api_get_attention_mask(tiny_model):
    spc = {name: 1000 + i for i, name in enumerate(DEFAULT_SPC_TOKENS)}
    api = ruDolphApi(tiny_model, FakeTokenizer(), None, spc_tokens=spc)
    s = TINY_PARAMS['l_text_seq_length'] + TINY_PARAMS['image_tokens_per_dim'] ** 2 + TINY_PARAMS['r_text_seq_length']
    mask = api.get_attention_mask(2)
    assert mask.shape == (2, 1, s, s) and torch.equal(mask[0, 0], torch.tril(torch.ones(s, s)))
    ids = torch.randint(1, 500, (2, TINY_PARAMS['l_text_seq_length']))
    with torch.no_grad():
        assert torch.equal(tiny_model(ids, mask)[0], tiny_model(ids, None)[0])


# ------------------------------------------------------------------------- fp16=True: the FP16Module
def test_fp16_returns_the_original_wrapper_that_the_package_accepts(tiny_registered):
    with pytest.warns(UserWarning, match='stays in float32'):
        wrapped = get_rudolph_model(tiny_registered, pretrained=False, fp16=True)
    assert isinstance(wrapped, FP16Module) and isinstance(wrapped.module, ruDolphModel)
    assert wrapped.dtype == torch.float32 and wrapped.get_param('vocab_size') == TINY_PARAMS['vocab_size'] + 16
    assert unwrap_model(wrapped) is wrapped.module and list(wrapped.state_dict()) == list(wrapped.module.state_dict())
    frozen = freeze(wrapped.module, freeze_emb=False, freeze_ln=False, freeze_attn=True, freeze_ff=True)
    assert frozen and all('.attention.' in n or '.mlp.' in n for n in frozen)
    ids = torch.randint(1, 500, (2, TINY_PARAMS['l_text_seq_length']))
    with torch.no_grad():
        assert torch.equal(wrapped(ids, None)[0], wrapped.module(ids, None)[0])
    spc = {name: 1000 + i for i, name in enumerate(DEFAULT_SPC_TOKENS)}
    api = ruDolphApi(wrapped, FakeTokenizer(), None, spc_tokens=spc, quite=True)
    assert api.parts.model is wrapped.module
    texts = api.generate_texts(template='ab', texts_num=2, bs=2, seed=1)
    assert texts and all(t['text'].startswith('ab') for t in texts)
    assert pipelines.generate_texts(FakeTokenizer(), wrapped, template='ab', texts_num=2, bs=2, seed=1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_fp16_wrapper_on_cuda_is_half_inside(tiny_registered):
    wrapped = get_rudolph_model(tiny_registered, pretrained=False, fp16=True, device='cuda')
    assert isinstance(wrapped, FP16Module) and wrapped.module.dtype == torch.float16
    ids = torch.randint(1, 500, (2, TINY_PARAMS['l_text_seq_length']), device='cuda')
    with torch.no_grad():
        logits, _ = wrapped(ids, get_attention_mask(2, 8, 4, 6, 'cuda')[:, :, :8, :8])
    assert logits.dtype == torch.float32


# ------------------------------------------------------------------------- save_pretrained / from_pretrained
def logits_of(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = TINY_PARAMS
    ids = torch.cat([torch.randint(4, 900, (2, c['l_text_seq_length']), generator=g),
                     torch.randint(0, c['image_vocab_size'], (2, c['image_tokens_per_dim'] ** 2), generator=g),
                     torch.randint(4, 900, (2, c['r_text_seq_length']), generator=g)], dim=1)
    with torch.no_grad():
        return model(ids)[0]


def test_model_folder_loads_the_way_it_was_saved(tmp_path, tiny_model):
    tiny_model.spc_tokens = {'<LT_T2I>': 1002}
    folder = tiny_model.save_pretrained(tmp_path / 'm')
    assert sorted(os.listdir(folder)) == ['config.json', 'model.safetensors']
    loaded = ruDolphModel.from_pretrained(folder)
    assert torch.equal(logits_of(loaded), logits_of(tiny_model)) and loaded.spc_tokens == tiny_model.spc_tokens
    assert not loaded.training and loaded.config == tiny_model.config
    assert torch.equal(logits_of(get_rudolph_model(folder)), logits_of(tiny_model))
    fresh = get_rudolph_model(folder, pretrained=False)
    assert fresh.config == tiny_model.config and not torch.equal(logits_of(fresh), logits_of(tiny_model))
    bf16 = ruDolphModel.from_pretrained(str(folder), dtype='bf16')
    assert bf16.dtype == torch.bfloat16
    saved = read_config(os.path.join(bf16.save_pretrained(tmp_path / 'bf16'), 'config.json'))
    assert saved['torch_dtype'] == 'bfloat16' and saved['spc_tokens'] == {'<LT_T2I>': 1002}
    again = ruDolphModel.from_pretrained(tmp_path / 'bf16', dtype=torch.bfloat16)
    assert torch.equal(logits_of(again), logits_of(bf16))
    with pytest.raises(ConfigError, match='unknown RuDOLPH model'):
        get_rudolph_model(str(tmp_path / 'nothing-here'))


@pytest.mark.skipif(not quant.int8_kernel_available(torch.device('cpu')), reason='no int8 kernel on this CPU')
def test_int8_folder_loads_back_as_the_same_int8_model(tmp_path, tiny_model):
    folder = tiny_model.save_pretrained(tmp_path / 'float')
    int8 = ruDolphModel.from_pretrained(folder, quantize='int8')
    again = ruDolphModel.from_pretrained(int8.save_pretrained(tmp_path / 'int8'))
    assert any(isinstance(m, quant.Int8Linear) for m in again.modules()) and again.dtype == int8.dtype
    assert torch.equal(logits_of(again), logits_of(int8))
    assert torch.equal(logits_of(get_rudolph_model(str(tmp_path / 'int8'))), logits_of(int8))


def test_model_folder_from_a_hub_repo_id(tmp_path, tiny_model):
    folder = tiny_model.save_pretrained(tmp_path / 'm')
    cache = tmp_path / 'hub'
    for name in ('config.json', 'model.safetensors'):
        fill_hub_cache(cache, 'someone/tiny-rudolph', name, lambda p, n=name: shutil.copy(os.path.join(folder, n), p))
    loaded = ruDolphModel.from_pretrained('someone/tiny-rudolph', cache_dir=str(cache))
    assert torch.equal(logits_of(loaded), logits_of(tiny_model))
    with pytest.raises(WeightsNotFoundError, match='someone/other'):
        ruDolphModel.from_pretrained('someone/other', cache_dir=str(cache))


def test_the_model_layer_never_imports_the_pretrained_layer():
    folder = os.path.join(os.path.dirname(rudolph.__file__), 'model')
    for name in sorted(os.listdir(folder)):
        if name.endswith('.py'):
            source = open(os.path.join(folder, name), encoding='utf-8').read()
            assert not re.search(r'^\s*(from|import) rudolph\.pretrained', source, re.M), name
    done = subprocess.run([sys.executable, '-c', 'import sys, rudolph.model.loading, rudolph.model.model; '
                           "assert not [m for m in sys.modules if m.startswith('rudolph.pretrained')]"],
                          capture_output=True, text=True, env={**os.environ, 'PYTHONPATH': os.getcwd()})
    assert done.returncode == 0, done.stderr


# ------------------------------------------------------------------------- Components: codecs on demand
def test_components_load_the_model_without_the_codecs_and_name_the_missing_one(tmp_path, tiny_model):
    folder = tiny_model.save_pretrained(tmp_path / 'unregistered')  # no published model has this architecture
    loaded = Components.from_pretrained(folder)
    assert torch.equal(logits_of(loaded.model), logits_of(tiny_model))
    with pytest.raises(WeightsNotFoundError, match='records no tokenizer; pass tokenizer=PATH.*include_codecs=True'):
        loaded.tokenizer
    tok = Components.from_pretrained(folder, tokenizer=MODELS['tiny-shapes']['tokenizer_path'], with_vae=False)
    assert tok.tokenizer.encode_text('круг', 8).shape == (8,) and tok.vae is None


def test_save_pretrained_include_codecs_carries_the_published_parts(tmp_path, tiny_registered):
    from rudolph.tokenizer.wrapper import HF_FILENAME, HF_REPO_ID
    from rudolph.vae import HF_FILENAMES
    from rudolph.vae import HF_REPO_ID as VAE_REPO

    alone = get_rudolph_model(tiny_registered, pretrained=False).save_pretrained(tmp_path / 'alone')
    cache = tmp_path / 'hub'
    fill_hub_cache(cache, HF_REPO_ID, HF_FILENAME, lambda p: shutil.copy(MODELS['tiny-shapes']['tokenizer_path'], p))
    fill_hub_cache(cache, VAE_REPO, HF_FILENAMES[False], lambda p: shutil.copy(MODELS['tiny-shapes']['vae_path'], p))
    loaded = Components.from_pretrained(alone, cache_dir=str(cache))
    full = loaded.save_pretrained(tmp_path / 'full', include_codecs=True, cache_dir=str(cache))
    assert sorted(os.listdir(full)) == ['README.md', 'bpe.model', 'config.json', 'model.safetensors',
                                        'vqgan.safetensors']
    config = read_config(os.path.join(full, 'config.json'))
    assert config['tokenizer'] == {'file': 'bpe.model'} and config['vae']['file'] == 'vqgan.safetensors'
    again = Components.from_pretrained(full, with_vae=False)  # offline, no hub cache: the folder carries them
    assert again.tokenizer.encode_text('круг', 8).tolist() == loaded.tokenizer.encode_text('круг', 8).tolist()


# ------------------------------------------------------------------------- ImagePrompts(disable_gumbel_softmax=)
def test_image_prompts_take_rudalle_disable_gumbel_softmax(recwarn):
    vqgan = get_vae('tiny-shapes').eval()
    shapes = make_image(64)
    expected = vqgan.get_codebook_indices(preprocess_image(shapes, 64)[None])
    prompts = ImagePrompts(shapes, {'down': 2}, vqgan, 'cpu', crop_first=False, disable_gumbel_softmax=True,
                           image_size=64)
    assert torch.equal(prompts.image_prompts, expected) and not recwarn.list  # ruDALL-E's argmax codes
    assert inspect.signature(ImagePrompts).parameters['disable_gumbel_softmax'].default is True  # as ruDALL-E
    with pytest.warns(UserWarning, match='always encodes with the argmax'):
        drawn = ImagePrompts(shapes, {'down': 2}, vqgan, 'cpu', disable_gumbel_softmax=False, image_size=64)
    assert torch.equal(drawn.image_prompts, expected)


def test_t2t_and_i2t_attention_masks_of_the_earlier_releases():
    causal = torch.tril(torch.ones(9, 9))
    t2t = model_utils.get_t2t_attention_mask(2, 2, 2, 3, 'cpu')
    expected = causal.clone()
    expected[2:] = 0
    assert t2t.shape == (2, 1, 9, 9) and torch.equal(t2t[1, 0], expected)
    i2t = model_utils.get_i2t_attention_mask(torch.tensor([[1, 0, 1], [1, 1, 1]]), 2, 2, 2, 3, 'cpu')
    expected = causal.clone()
    expected[:, :2] = 0
    assert torch.equal(i2t[1, 0], expected)
    expected[2 + 4 + 1:] = 0
    assert torch.equal(i2t[0, 0], expected)


def test_fp16_conversion_helpers():
    half = torch.ones(2, dtype=torch.float16)
    out = fp32_to_fp16((torch.ones(2), [torch.ones(1, dtype=torch.long), 'x']))
    assert out[0].dtype == torch.float16 and out[1][0].dtype == torch.long and out[1][1] == 'x'
    assert fp16_to_fp32([half])[0].dtype == torch.float32 and fp16_to_fp32(half).dtype == torch.float32


# ------------------------------------------------------------------------- what the original's unit tests exercise
#: the image-to-image block (query rows, key columns) of each mask for N = 3, written out from SPEC section 4
IMAGE_BLOCKS = {
    'row': ['100000000', '110000000', '111000000', '111100000', '011110000',
            '001111000', '000111100', '000011110', '000001111'],
    'col': ['100000000', '010000000', '001000000', '100100000', '010010000',
            '001001000', '100100100', '010010010', '001001001'],
    'conv3': ['100000000', '110000000', '011000000', '110100000', '111110000',
              '011011000', '000110100', '000111110', '000011011'],
}


def layout_mask(block, l_text=2, r_text=2):
    """The whole ``[S, S]`` mask: causal text rows, image rows seeing all left text, then ``block``."""
    n2 = len(block)
    s = l_text + n2 + r_text
    rows = []
    for q in range(s):
        if l_text <= q < l_text + n2:
            rows.append('1' * l_text + block[q - l_text] + '0' * r_text)
        else:
            rows.append('1' * (q + 1) + '0' * (s - q - 1))
    return torch.tensor([[int(c) for c in row] for row in rows], dtype=torch.int32)


@pytest.mark.parametrize('name', sorted(IMAGE_BLOCKS))
def test_masks_of_a_small_layout_element_by_element(name):
    build = {'row': lambda: get_row_mask(l_text_tokens=2, image_tokens_per_dim=3, r_text_tokens=2),
             'col': lambda: get_col_mask(l_text_tokens=2, image_tokens_per_dim=3, r_text_tokens=2),
             'conv3': lambda: get_conv_mask(l_text_tokens=2, image_tokens_per_dim=3, r_text_tokens=2, kernel=3)}
    mask = build[name]()
    assert mask.dtype == torch.float32 and mask.shape == (13, 13)
    expected = layout_mask(IMAGE_BLOCKS[name])
    wrong = [(q, k) for q in range(13) for k in range(13) if int(mask[q, k]) != int(expected[q, k])]
    assert not wrong, f'{name}: {len(wrong)} pairs differ, e.g. {wrong[:5]}'


#: the original unit tests' model: the 350M geometry with the first release's vocabulary (no special tokens)
ORIGINAL_350M = dict(num_layers=24, hidden_size=1024, num_attention_heads=16, embedding_dropout_prob=0.1,
                     output_dropout_prob=0.1, attention_dropout_prob=0.1, image_tokens_per_dim=16,
                     l_text_seq_length=64, r_text_seq_length=64, kernel_size=7, last_kernel_size=9,
                     cogview_sandwich_layernorm=True, cogview_pb_relax=True, vocab_size=16384 + 64,
                     image_vocab_size=8192)


def test_350m_forward_with_the_original_keywords():
    torch.manual_seed(0)
    model = ruDolphModel(device='cpu', **ORIGINAL_350M).eval()
    bs, l_text, r_text = 2, model.get_param('l_text_seq_length'), model.get_param('r_text_seq_length')
    n = model.get_param('image_tokens_per_dim')
    mask = get_attention_mask(bs, l_text, n, r_text, model.get_param('device'))
    ids = torch.cat([torch.tensor([[*range(1000, 1000 + l_text - 11), 2, *[0] * 10]] * bs),
                     torch.tensor([[*range(5000, 5000 + n * n)]] * bs),
                     torch.tensor([[*range(2000, 2000 + r_text - 11), 2, *[0] * 10]] * bs)], dim=1)
    with torch.no_grad():
        loss, loss_values, hidden_states = model.forward(ids, mask, return_loss=True, return_hidden_states=True,
                                                         lt_loss_weight=1, img_loss_weight=7, rt_loss_weight=1)
    assert isinstance(loss.item(), float) and math.isfinite(loss.item())
    assert set(loss_values) == {'l_text_loss', 'image_loss', 'r_text_loss'} and len(hidden_states) == 24
    assert hidden_states[0].shape == (bs, l_text + n * n + r_text, 1024)
    weighted = (loss_values['l_text_loss'] + 7 * loss_values['image_loss'] + loss_values['r_text_loss']) / 9
    assert abs(float(loss) - float(weighted)) < 1e-4


def test_fp16_module_copies_and_moves_like_a_module(tiny_model):
    wrapped = FP16Module(tiny_model, convert=False)
    clone = copy.deepcopy(wrapped)
    assert isinstance(clone.module, ruDolphModel) and clone.module is not tiny_model
    assert clone.to('cpu') is clone and clone.device == torch.device('cpu')
    with pytest.raises(AttributeError, match='no_such_thing'):
        wrapped.no_such_thing
