"""Code written for the original package runs unchanged (issue 25): its helpers, its fp16 wrapper, saved
folders loading the way they were saved, and what the original's own unit tests exercise."""
import pytest
import torch
from conftest import TINY_PARAMS
from fakes import FakeTokenizer

from rudolph.api import DEFAULT_SPC_TOKENS, ruDolphApi
from rudolph.errors import ConfigError
from rudolph.model import utils as model_utils
from rudolph.model.utils import get_attention_mask


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
