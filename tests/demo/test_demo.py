"""The embedded tiny-shapes RuDOLPH: offline loading, the dataset, the codecs, and its measured quality.

The quality check runs the public API (codecs, masks, KV cache, generation, reranking) on
learned weights: any regression there lowers these accuracies.
"""
import os

import numpy as np
import pytest
import torch

from rudolph.demo import (
    MODEL_PARAMS,
    RUDOLPH_PATH,
    TINY_SPC_TOKENS,
    TOKENIZER_PATH,
    VQGAN_CONFIG,
    VQGAN_PATH,
    load_bundle,
)
from rudolph.demo import shapes as S

WEIGHTS = (TOKENIZER_PATH, VQGAN_PATH, RUDOLPH_PATH)


@pytest.fixture(scope='module')
def bundle():
    return load_bundle()


@pytest.fixture(scope='module')
def code_samples():
    """120 pictures, their canonical coverage and the edge patterns fitted on them."""
    from rudolph.demo import train as T

    samples = S.make_samples(120, seed=11)
    alpha = T.coverage(samples, T.images_tensor(samples, canonical=True))
    return samples, alpha, T.fit_shape_patterns(samples, alpha)


def run_training(*argv: str) -> None:
    """``python -m rudolph.demo.train ARGV`` in this process (it sets the thread count: restore it)."""
    from rudolph.demo.train import main

    threads = torch.get_num_threads()
    try:
        assert main(list(argv)) == 0
    finally:
        torch.set_num_threads(threads)


def test_weights_are_small_and_shipped():
    total = sum(os.path.getsize(p) for p in WEIGHTS)
    assert total <= 20e6, total


def test_generator_is_deterministic():
    a, b = S.make_sample(17, seed=3), S.make_sample(17, seed=3)
    assert (a.shape, a.colour, a.size, a.position, a.background) == (b.shape, b.colour, b.size, b.position, b.background)
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert a.image.size == (64, 64)
    other = S.make_samples(20, seed=4)
    assert len({(s.shape, s.colour, s.position) for s in other}) > 10
    assert S.caption(a) == b.caption and len(set(a.captions)) == len(S.CAPTION_TEMPLATES)


def test_generator_covers_the_attributes():
    samples = S.make_samples(300, seed=1)
    assert {s.shape for s in samples} == set(S.SHAPES) and len(S.SHAPES) >= 5
    assert {s.colour for s in samples} == set(S.COLOURS) and len(S.COLOURS) >= 6
    assert {s.position for s in samples} == set(S.POSITIONS)
    assert {s.size for s in samples} == set(S.SIZES)


def test_pixel_checker_is_exact_on_clean_renders():
    for s in S.make_samples(60, seed=5):
        judged = S.check_image(s.image)
        assert (judged['colour'], judged['shape'], judged['background']) == (s.colour, s.shape, s.background), s


def test_caption_parsers():
    s = S.make_sample(0, seed=0)
    for text in s.captions:
        assert S.parse_colour(text) == s.colour and S.parse_shape(text) == s.shape, text
    assert S.parse_colour('на картинке') is None


def test_names_load_offline():
    from rudolph import get_rudolph_model, get_tokenizer, get_vae

    model = get_rudolph_model('tiny-shapes')
    assert model.get_param('l_text_seq_length') == MODEL_PARAMS['l_text_seq_length']
    assert get_tokenizer('tiny-shapes').vocab_size() <= min(TINY_SPC_TOKENS.values())
    vae = get_vae('tiny-shapes')
    assert vae.num_tokens == VQGAN_CONFIG['n_embed'] == get_vae(name='tiny-shapes').num_tokens


def test_tokenizer_round_trips_every_text(bundle):
    tok = bundle.tokenizer
    for text in sorted(set(S.all_texts(S.make_samples(120, seed=7)))):
        ids = tok.encode_text(text, MODEL_PARAMS['r_text_seq_length'] - 1)
        assert int(ids[int((ids != 0).sum()) - 1]) == tok.eos_id, text  # fits with the task token
        assert tok.decode_text(ids) == text


def test_vqgan_reconstructions_keep_colour_and_shape(bundle):
    from rudolph.utils import torch_tensors_to_pil_list
    from rudolph.vae import preprocess_image

    samples = S.make_samples(24, seed=8)
    x = torch.stack([preprocess_image(s.image, 64) for s in samples])
    canonical = torch.stack([preprocess_image(s.canonical_image, 64) for s in samples])
    with torch.no_grad():
        codes = bundle.vae.get_codebook_indices(x)
        rec = bundle.vae.decode(codes)
    assert codes.shape == (24, 64)
    judged = [S.check_image(img) for img in torch_tensors_to_pil_list(rec)]
    colour = np.mean([j['colour'] == s.colour for j, s in zip(judged, samples)])
    shape = np.mean([j['shape'] == s.shape for j, s in zip(judged, samples)])
    # Shipped VQGAN on 200 held-out pictures: colour 100%, pixel shape check 83% (small stars
    # lose their points), L1 to the canonical picture 0.0066; 24 pictures here, margins for the
    # sample noise.
    assert colour >= 0.9, (colour, shape)
    assert shape >= 0.65, (colour, shape)
    # the decoder draws the canonical picture (no jitter)
    assert (rec - canonical).abs().mean() < 0.02


def test_cli_registers_demo():
    from rudolph.cli import commands as cli

    parser = cli.build_parser()
    args = parser.parse_args(['demo', '--n', '3', '--out', 'x'])
    assert args.command == 'demo' and args.n == 3


def test_measured_quality(bundle):
    """A smaller version of the README numbers: 40 held-out pictures.

    Where the shipped weights meet the issue's target (``THRESHOLDS``, 200 pictures), the
    test requires the target minus 10 points; where they do not (see the README), it requires
    the recorded 200-picture accuracy minus 15 points (40-sample noise), so that nothing in
    the codecs, masks, cache or pipelines makes the learned model worse than recorded.
    """
    from rudolph.demo.evaluate import RECORDED, THRESHOLDS, evaluate, format_table, make_api

    result = evaluate(make_api(bundle), n=40)
    print(format_table(result))
    for key, target in THRESHOLDS.items():
        recorded = RECORDED.accuracy[key]
        required = target - 0.10 if recorded >= target else recorded - 0.15
        assert result.accuracy[key] >= required, (key, required, result.accuracy, RECORDED.accuracy)


def test_training_codes_name_colour_shape_and_background(code_samples):
    from rudolph.demo import train as T

    samples, alpha, patterns = code_samples
    assert patterns.shape == (len(S.SHAPES), T.N_PATTERNS, 64)
    codes = T.target_codes(samples, alpha, patterns)
    assert codes.shape == (120, 64) and int(codes.max()) < VQGAN_CONFIG['n_embed']
    feats = T.code_features(patterns)
    for s, c in zip(samples, codes):
        f = feats[c]
        background = f[:, 64 + T.N_COLOURS + T.N_SHAPES:]
        shape_part = background.sum(1) == 0
        assert 0 < int(shape_part.sum()) < 64, s
        assert (background[~shape_part].argmax(1) == list(S.BACKGROUNDS).index(s.background)).all()
        assert (f[shape_part, 64:64 + T.N_COLOURS].argmax(1) == list(S.COLOURS).index(s.colour)).all()
        assert (f[shape_part, 64 + T.N_COLOURS:64 + T.N_COLOURS + T.N_SHAPES].argmax(1)
                == list(S.SHAPES).index(s.shape)).all()


def test_training_codes_ignore_the_jitter(code_samples):
    """The target codes are a function of the caption's attributes: jittered variants share them."""
    from rudolph.demo import train as T

    attrs = ('star', 'green', 'small', 'centre', 'gray')
    variants = [S.Sample(*attrs, image=S.render(*attrs, jitter), jitter=jitter)
                for jitter in ((0, 0, 0), (2, -2, 1), (-2, 1, -1))]
    assert len({v.image.tobytes() for v in variants}) == 3
    patterns = code_samples[2]
    codes = T.target_codes(variants, T.coverage(variants, T.images_tensor(variants, canonical=True)), patterns)
    assert (codes == codes[0]).all()


def test_training_command_writes_loadable_files(tmp_path):
    """``python -m rudolph.demo.train`` end to end with a handful of steps: the three files load by path."""
    from rudolph import get_rudolph_model, get_tokenizer, get_vae

    run_training('--out', str(tmp_path), '--pictures', '60', '--encoder-steps', '2', '--decoder-steps', '2',
                 '--rudolph-stages', '2:1e-3', '--t2i-rows', '1', '--i2t-rows', '1', '--threads', '1', '--quiet')
    tokenizer = get_tokenizer(str(tmp_path / os.path.basename(TOKENIZER_PATH)))
    assert tokenizer.vocab_size() <= min(TINY_SPC_TOKENS.values())
    vae = get_vae(path=str(tmp_path / os.path.basename(VQGAN_PATH)), config=VQGAN_CONFIG)
    assert vae.num_tokens == VQGAN_CONFIG['n_embed']
    model = get_rudolph_model('tiny-shapes', checkpoint_path=str(tmp_path / os.path.basename(RUDOLPH_PATH)))
    assert model.get_param('image_vocab_size') == VQGAN_CONFIG['n_embed']


def test_training_command_retrains_one_vqgan_half(tmp_path):
    """``--skip tokenizer encoder rudolph``: the encoder comes from the file, the decoder is trained again
    from the initial weights of a full run (so both runs give the same decoder)."""
    from rudolph.demo import train as T
    from rudolph.vae.model import read_checkpoint_state_dict

    args = ['--out', str(tmp_path), '--pictures', '60', '--encoder-steps', '3', '--decoder-steps', '2',
            '--rudolph-stages', '1:1e-3', '--t2i-rows', '1', '--i2t-rows', '1', '--threads', '1', '--quiet']
    path = str(tmp_path / os.path.basename(VQGAN_PATH))
    run_training(*args)
    full = read_checkpoint_state_dict(path)
    # encoder only: the file's decoder is kept
    run_training(*args, '--skip', 'tokenizer', 'decoder', 'rudolph', '--encoder-steps', '1')
    other_encoder = read_checkpoint_state_dict(path)
    # decoder only: the encoder of the file, the decoder retrained as in the full run
    run_training(*args, '--skip', 'tokenizer', 'encoder', 'rudolph')
    again = read_checkpoint_state_dict(path)
    encoder = [k for k in full if k.startswith(T.ENCODER_PARTS)]
    decoder = [k for k in full if k.startswith(T.DECODER_PARTS)]
    assert encoder and decoder
    assert all(torch.equal(other_encoder[k], full[k]) for k in decoder)
    assert not all(torch.equal(other_encoder[k], full[k]) for k in encoder)
    assert all(torch.equal(again[k], other_encoder[k]) for k in encoder)
    assert all(torch.equal(again[k], full[k]) for k in decoder)

    with pytest.raises(ValueError, match='no weights'):
        T.reuse_parts(T.new_vqgan(np.zeros((len(S.SHAPES), T.N_PATTERNS, 64), np.float32)), path, ('nothing.',))


def test_demo_rejects_counts_below_one(capsys):
    from rudolph.cli import commands as cli

    for argv, needle in ((['--codebooks', '0'], '--codebooks 0'), (['--n', '-5'], '--n -5'),
                         (['--images', '0'], '--images 0'), (['--threads', '0'], '--threads 0'),
                         (['--images', '9', '--codebooks', '8'], '--images 9 cannot exceed --codebooks 8')):
        assert cli.main(['demo'] + argv) == 1, argv
        err = capsys.readouterr().err
        assert needle in err and 'images_num' not in err and 'Traceback' not in err, err


def test_demo_help_and_default_n_agree(capsys):
    from rudolph.cli import commands as cli
    from rudolph.demo.cli import DEFAULT_N

    with pytest.raises(SystemExit):
        cli.main(['demo', '--help'])
    assert f'default {DEFAULT_N},' in ' '.join(capsys.readouterr().out.split()) and DEFAULT_N == 20


def test_table_shows_sample_size_and_wilson_interval():
    from rudolph.demo.evaluate import EvalResult, format_table, wilson_interval

    low, high = wilson_interval(0.7, 20)
    assert 0.48 < low < 0.49 and 0.85 < high < 0.86  # 14/20: the 85% target is inside the interval
    assert wilson_interval(1.0, 40)[1] == 1.0 and wilson_interval(0.0, 40)[0] == 0.0
    table = format_table(EvalResult(n=20, accuracy={'t2i': 0.7}, seconds={}))
    assert '95% CI' in table and '48% - 85%' in table and ' 20 ' in table
