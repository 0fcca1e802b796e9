"""Tests of the plain-PyTorch Gumbel VQGAN (rudolph.vae). No network; tiny models on CPU."""
import math
import os
import pickle
import re
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from rudolph import vae as vae_pkg
from rudolph.vae import (
    HF_FILENAMES,
    HF_REPO_ID,
    CheckpointMismatchError,
    CorruptCheckpointError,
    DWTInverse,
    VQGanConfig,
    VQGanGumbelVAE,
    get_vae,
    preprocess_image,
)
from rudolph.vae.image import to_rgb
from rudolph.vae.modules import AttnBlock, Decoder, Encoder

# 4 levels (f = 8) like the real model, at 32 px -> 4x4 tokens
TINY = dict(ch=32, ch_mult=(1, 1, 1, 1), num_res_blocks=1, attn_resolutions=(4,), resolution=32,
            z_channels=32, embed_dim=32, n_embed=64)

# taming-transformers GumbelVQ with ruDALL-E's config (checked against taming's Encoder/Decoder)
FULL_PARAMS = 68_995_971


@pytest.fixture(autouse=True, scope='module')
def _one_thread():
    """The models here are tiny: one intra-op thread avoids oversubscribing shared CPUs (5x faster)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tiny(dwt: bool = False, seed: int = 0) -> VQGanGumbelVAE:
    torch.manual_seed(seed)
    return VQGanGumbelVAE(TINY, dwt=dwt).eval()


def _images(b: int = 2, side: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.rand(b, 3, side, side, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- architecture

def _conv(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k + cout


def _res(cin: int, cout: int) -> int:
    return 2 * cin + _conv(cin, cout, 3) + 2 * cout + _conv(cout, cout, 3) + (_conv(cin, cout, 1) if cin != cout else 0)


def _attn(c: int) -> int:
    return 2 * c + 4 * _conv(c, c, 1)


def _expected_params(ch=128, ch_mult=(1, 1, 2, 4), nrb=2, attn=(32,), res=256, z=256, emb=256, n=8192, out=3):
    total = _conv(3, ch, 3)  # encoder
    block_in, cur = ch, res
    for i, m in enumerate(ch_mult):
        block_in = ch * ((1,) + tuple(ch_mult))[i]
        for _ in range(nrb):
            total += _res(block_in, ch * m) + (_attn(ch * m) if cur in attn else 0)
            block_in = ch * m
        if i != len(ch_mult) - 1:
            total += _conv(block_in, block_in, 3)
            cur //= 2
    total += 2 * _res(block_in, block_in) + _attn(block_in) + 2 * block_in + _conv(block_in, z, 3)
    total += _conv(z, block_in, 3) + 2 * _res(block_in, block_in) + _attn(block_in)  # decoder
    for i in reversed(range(len(ch_mult))):
        for _ in range(nrb + 1):
            total += _res(block_in, ch * ch_mult[i]) + (_attn(ch * ch_mult[i]) if cur in attn else 0)
            block_in = ch * ch_mult[i]
        if i != 0:
            total += _conv(block_in, block_in, 3)
            cur *= 2
    total += 2 * block_in + _conv(block_in, out, 3)
    total += _conv(z, n, 1) + n * emb + _conv(z, emb, 1) + _conv(emb, z, 1)  # quantize, quant convs
    return total


def test_full_size_state_dict_matches_taming_layout():
    with torch.device('meta'):
        vae = VQGanGumbelVAE()
    sd = vae.model.state_dict()
    expected = {
        'encoder.conv_in.weight': (128, 3, 3, 3),
        'encoder.down.0.block.0.norm1.weight': (128,),
        'encoder.down.2.block.0.nin_shortcut.weight': (256, 128, 1, 1),
        'encoder.down.3.block.1.conv2.weight': (512, 512, 3, 3),
        'encoder.down.3.attn.1.q.weight': (512, 512, 1, 1),
        'encoder.down.3.attn.0.proj_out.bias': (512,),
        'encoder.down.2.downsample.conv.weight': (256, 256, 3, 3),
        'encoder.mid.block_1.conv1.weight': (512, 512, 3, 3),
        'encoder.mid.attn_1.norm.weight': (512,),
        'encoder.norm_out.bias': (512,),
        'encoder.conv_out.weight': (256, 512, 3, 3),
        'decoder.conv_in.weight': (512, 256, 3, 3),
        'decoder.mid.block_2.norm2.bias': (512,),
        'decoder.up.3.block.2.conv1.weight': (512, 512, 3, 3),
        'decoder.up.3.attn.2.v.weight': (512, 512, 1, 1),
        'decoder.up.3.upsample.conv.weight': (512, 512, 3, 3),
        'decoder.up.1.block.0.nin_shortcut.weight': (128, 256, 1, 1),
        'decoder.up.0.block.2.conv2.weight': (128, 128, 3, 3),
        'decoder.norm_out.weight': (128,),
        'decoder.conv_out.weight': (3, 128, 3, 3),
        'quantize.proj.weight': (8192, 256, 1, 1),
        'quantize.embed.weight': (8192, 256),
        'quant_conv.weight': (256, 256, 1, 1),
        'post_quant_conv.bias': (256,),
    }
    for key, shape in expected.items():
        assert tuple(sd[key].shape) == shape, key
    absent = ['encoder.down.3.downsample.conv.weight', 'decoder.up.0.upsample.conv.weight',
              'encoder.down.2.attn.0.q.weight', 'encoder.down.0.block.0.nin_shortcut.weight',
              'encoder.down.0.block.0.temb_proj.weight']
    assert not any(k in sd for k in absent)
    assert {k.split('.')[0] for k in sd} == {'encoder', 'decoder', 'quantize', 'quant_conv', 'post_quant_conv'}
    n_params = sum(p.numel() for p in vae.parameters())
    assert n_params == _expected_params() == FULL_PARAMS
    assert vae.num_tokens == 8192 and vae.image_size == 256 and vae.num_layers == 5
    assert vae.image_tokens_per_side == 32


def test_full_size_dwt_layout():
    with torch.device('meta'):
        vae = VQGanGumbelVAE(dwt=True)
    sd = vae.state_dict()
    assert tuple(sd['model.decoder.decoder.conv_out.weight'].shape) == (12, 128, 3, 3)
    assert tuple(sd['model.decoder.post_quant_conv.weight'].shape) == (256, 256, 1, 1)
    assert tuple(sd['model.post_quant_conv.weight'].shape) == (256, 256, 1, 1)
    assert tuple(sd['model.decoder.idwt.g0_col'].shape) == (1, 1, 2, 1)
    assert tuple(sd['model.decoder.idwt.g1_row'].shape) == (1, 1, 1, 2)
    assert all(k.startswith('model.') for k in sd)
    assert sum(p.numel() for p in vae.parameters()) == FULL_PARAMS + _conv(256, 256, 1) + 128 * 9 * 9 + 9
    assert vae.image_size == 256


def test_attention_matches_explicit_softmax():
    torch.manual_seed(0)
    block = AttnBlock(32)
    x = torch.randn(2, 32, 3, 5)
    with torch.no_grad():
        h = block.norm(x)
        q, k, v = (m(h).flatten(2) for m in (block.q, block.k, block.v))  # [b, c, hw]
        w = torch.softmax(torch.einsum('bci,bcj->bij', q, k) * 32 ** -0.5, dim=2)
        ref = x + block.proj_out(torch.einsum('bcj,bij->bci', v, w).reshape_as(x))
        torch.testing.assert_close(block(x), ref, rtol=1e-4, atol=1e-5)


def _taming():
    """taming-transformers' ``Encoder``/``Decoder`` (a test-only dependency, installed with --no-deps).

    scripts/test.sh installs it: under CI=true the oracle must run, so a missing module fails.
    """
    if os.environ.get('CI') == 'true':
        import taming.modules.diffusionmodules.model as taming
        return taming
    return pytest.importorskip('taming.modules.diffusionmodules.model')


def test_parity_with_taming_modules_if_installed():
    taming = _taming()
    dd = dict(ch=32, out_ch=3, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), in_channels=3,
              resolution=16, z_channels=32, double_z=False, dropout=0.0)
    torch.manual_seed(0)
    ref_enc, ref_dec = taming.Encoder(**dd), taming.Decoder(**dd)
    dd.pop('double_z')
    enc = Encoder(**{k: v for k, v in dd.items() if k != 'out_ch'})
    dec = Decoder(**{k: v for k, v in dd.items() if k != 'in_channels'})
    enc.load_state_dict(ref_enc.state_dict())
    dec.load_state_dict(ref_dec.state_dict())
    x, z = torch.randn(1, 3, 16, 16), torch.randn(1, 32, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(enc(x), ref_enc(x), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(dec(z), ref_dec(z), rtol=1e-4, atol=1e-4)


def _taming_twins(vae: VQGanGumbelVAE):
    """taming ``Encoder``/``Decoder`` built from ``vae.config``, sharing ``vae``'s weight tensors."""
    taming = _taming()
    c = vae.config
    dd = dict(ch=c.ch, out_ch=c.out_ch, ch_mult=c.ch_mult, num_res_blocks=c.num_res_blocks,
              attn_resolutions=c.attn_resolutions, in_channels=c.in_channels, resolution=c.resolution,
              z_channels=c.z_channels, double_z=False, dropout=c.dropout)
    with torch.device('meta'):  # no second random init: the weights are ours, assigned below
        enc, dec = taming.Encoder(**dd), taming.Decoder(**dd)
    # strict: every taming parameter has exactly our name and shape
    enc.load_state_dict(vae.model.encoder.state_dict(), strict=True, assign=True)
    dec.load_state_dict(vae.model.decoder.state_dict(), strict=True, assign=True)
    return enc.eval(), dec.eval()


def _taming_ids(vae: VQGanGumbelVAE, enc, img: torch.Tensor) -> torch.Tensor:
    """ruDALL-E's encoding with taming's encoder: [0, 1] -> [-1, 1], encoder, quant_conv, proj, argmax."""
    with torch.no_grad():
        logits = vae.model.quantize.proj(vae.model.quant_conv(enc(2 * img - 1)))
    return logits.argmax(dim=1).flatten(1)


def _taming_decode(vae: VQGanGumbelVAE, dec, ids: torch.Tensor) -> torch.Tensor:
    """ruDALL-E's decoding with taming's decoder: one-hot @ codebook, post_quant_conv, decoder, clamp, [0, 1]."""
    b, n = ids.shape[0], math.isqrt(ids.shape[1])
    with torch.no_grad():
        z = F.one_hot(ids, num_classes=vae.num_tokens).float() @ vae.model.quantize.embed.weight
        z = z.reshape(b, n, n, -1).permute(0, 3, 1, 2)
        return (dec(vae.model.post_quant_conv(z)).clamp(-1.0, 1.0) + 1) * 0.5


def _check_against_taming(vae: VQGanGumbelVAE, side: int, b: int) -> None:
    enc, dec = _taming_twins(vae)
    img = torch.rand(b, 3, side, side, generator=torch.Generator().manual_seed(side))
    ids = vae.get_codebook_indices(img)
    assert ids.shape == (b, (side // 8) ** 2)
    assert torch.equal(ids, _taming_ids(vae, enc, img))
    assert len(ids.unique()) > 10  # a real variety of codes, not one repeated id
    out = vae.decode(ids)
    ref = _taming_decode(vae, dec, ids)
    assert out.shape == ref.shape == (b, 3, side, side)
    assert out.std() > 0.05 and ((out > 0) & (out < 1)).float().mean() > 0.9  # not clamped flat
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)


# ruDALL-E's architecture (ch_mult=(1, 1, 2, 4), num_res_blocks=2, attention at 32 for resolution=256,
# one mid attention block) at a quarter of the width: ch=128 -> 32, z_channels=embed_dim 256 -> 32,
# n_embed 8192 -> 64. Every branch of the forward pass -- the number of levels, of res blocks per level,
# where nin_shortcut appears (the channel count doubles into levels 2 and 3), where attention blocks are
# placed (taming compares attn_resolutions with the *configured* feature side: resolution=256 puts them on
# the last encoder level and the first decoder level, whatever the input size), the asymmetric padding
# of the downsampling, the upsampling, GroupNorm(32) + swish -- depends on ch_mult, num_res_blocks,
# attn_resolutions and resolution only; ch just scales the width of every tensor (and GroupNorm's group
# size: 1 channel per group at level 0 here, 4 in the real model, the same op). Inputs of 128, 192 and
# 256 px go through that 256-px configuration, as with the real model; 4x smaller channels make each
# size ~16x cheaper on CPU. test_parity_with_taming_full_size_128px covers the real widths once.
REAL_SHAPE_NARROW = dict(ch=32, z_channels=32, embed_dim=32, n_embed=64)


@pytest.mark.parametrize('side', [128, 192, 256])
def test_parity_with_taming_real_architecture(side):
    torch.manual_seed(0)
    vae = VQGanGumbelVAE(REAL_SHAPE_NARROW).eval()
    assert (vae.config.ch_mult, vae.config.num_res_blocks, vae.config.attn_resolutions, vae.config.resolution) \
        == ((1, 1, 2, 4), 2, (32,), 256)
    assert len(vae.model.encoder.down[3].attn) == 2 and len(vae.model.decoder.up[3].attn) == 3
    assert not any(len(vae.model.encoder.down[i].attn) for i in range(3))
    _check_against_taming(vae, side, b=2 if side == 128 else 1)


def test_parity_with_taming_full_size_128px():
    """ruDALL-E's exact configuration (69M random parameters), one 128-px image: ~5 s on one CPU thread."""
    torch.manual_seed(0)
    vae = VQGanGumbelVAE().eval()
    assert vae.config == VQGanConfig()
    _check_against_taming(vae, 128, b=1)


def test_config_overrides_and_errors():
    cfg = VQGanConfig.from_any(dict(ch=32, n_embed=512))
    assert cfg.ch == 32 and cfg.n_embed == 512 and cfg.ch_mult == (1, 1, 2, 4)
    with pytest.raises(ValueError, match='unknown VQGAN config keys'):
        VQGanConfig.from_any(dict(chan=32))
    with pytest.raises(ValueError, match='divisible by 32'):
        VQGanConfig(ch=48)
    with pytest.raises(ValueError, match='double_z'):
        VQGanConfig(double_z=True)
    with pytest.raises(ValueError, match='embed_dim == z_channels'):
        VQGanConfig(embed_dim=128)


# ---------------------------------------------------------------- tiny model semantics

def test_tiny_encode_decode_semantics():
    vae = _tiny()
    img = _images()
    ids = vae.get_codebook_indices(img)
    assert ids.shape == (2, 16) and ids.dtype == torch.long
    with torch.no_grad():
        h = vae.model.encoder(2 * img - 1)
        logits = vae.model.quantize.proj(vae.model.quant_conv(h))
        assert logits.shape == (2, 64, 4, 4)
        assert torch.equal(ids, logits.argmax(dim=1).reshape(2, -1))
        assert torch.equal(vae.get_codebook_indices(img, disable_gumbel_softmax=True), ids)

        out = vae.decode(ids)
        assert out.shape == (2, 3, 32, 32)
        assert out.min() >= 0 and out.max() <= 1
        z = vae.model.quantize.embed.weight[ids].reshape(2, 4, 4, 32).permute(0, 3, 1, 2)
        ref = (vae.model.decoder(vae.model.post_quant_conv(z)).clamp(-1, 1) + 1) / 2
        torch.testing.assert_close(out, ref)
        torch.testing.assert_close(vae.model.decode_code(ids.reshape(2, 4, 4)), vae.model.decode(z))

        # ruDALL-E's one-hot @ codebook is the same lookup
        one_hot = F.one_hot(ids, num_classes=vae.num_tokens).float()
        torch.testing.assert_close(one_hot @ vae.model.quantize.embed.weight, vae.model.quantize.embed(ids))
    with pytest.raises(ValueError, match='perfect square'):
        vae.decode(ids[:, :15])


def test_tiny_encode_interface():
    vae = _tiny()
    x = 2 * _images() - 1
    with torch.no_grad():
        logits = vae.model.encode_to_logits(x)
        qy = torch.softmax(logits, dim=1)
        kl = vae.config.kl_weight * torch.sum(qy * torch.log(qy * 64 + 1e-10), dim=1).mean()

        quant, loss, (a, b, ind) = vae.model.encode(x, disable_gumbel_softmax=True)
        assert a is None and b is None
        assert torch.equal(ind, logits.argmax(dim=1))
        torch.testing.assert_close(quant, vae.model.quantize.embed(ind).permute(0, 3, 1, 2))
        torch.testing.assert_close(loss, kl)

        # Gumbel path: F.gumbel_softmax(logits, tau=temperature, dim=1, hard=True in eval)
        torch.manual_seed(5)
        quant, loss, (_, _, ind) = vae.model.encode(x)
        torch.manual_seed(5)
        one_hot = F.gumbel_softmax(logits, tau=1.0, dim=1, hard=True)
        assert torch.equal(ind, one_hot.argmax(dim=1))
        torch.testing.assert_close(quant, torch.einsum('bnhw,nd->bdhw', one_hot, vae.model.quantize.embed.weight))
        torch.testing.assert_close(loss, kl)

        dec, diff = vae.model(x)
        assert dec.shape == x.shape and diff.dim() == 0
    # training mode with straight_through: soft samples carry gradients to the logits
    vae.model.train()
    quant, loss, _ = vae.model.encode(x)
    (quant.sum() + loss).backward()
    assert vae.model.quantize.proj.weight.grad is not None


# ---------------------------------------------------------------- wavelets

def _haar_forward(x: torch.Tensor):
    """Exact one-level Haar analysis in the (LL, [LH, HL, HH]) layout of pytorch_wavelets / pywt."""
    a, b = x[..., 0::2, 0::2], x[..., 0::2, 1::2]
    c, d = x[..., 1::2, 0::2], x[..., 1::2, 1::2]
    ll = (a + b + c + d) / 2
    lh = (a + b - c - d) / 2  # high-pass along height (pywt cH)
    hl = (a - b + c - d) / 2  # high-pass along width (pywt cV)
    hh = (a - b - c + d) / 2
    return ll, torch.stack([lh, hl, hh], dim=2)


def test_inverse_haar_inverts_exact_forward():
    x = torch.randn(2, 3, 6, 8, dtype=torch.float64)
    ll, high = _haar_forward(x)
    idwt = DWTInverse().double()
    torch.testing.assert_close(idwt((ll, [high])), x, rtol=0, atol=1e-6)
    # a None band level is zeros
    torch.testing.assert_close(idwt((ll, [None])), idwt((ll, [torch.zeros_like(high)])))


def test_inverse_haar_hand_computed_example():
    """One level of the orthonormal Haar synthesis, worked out by hand.

    Each 2x2 output block [[a, b], [c, d]] comes from the coefficients at its position:
    a = (LL + LH + HL + HH) / 2, b = (LL + LH - HL - HH) / 2,
    c = (LL - LH + HL - HH) / 2, d = (LL - LH - HL + HH) / 2
    (LH: high-pass along the height, HL: along the width; filters 1/sqrt(2) * (1, 1) and (1, -1)).
    """
    # channel 0, two coefficient positions side by side (a 1x2 grid -> a 2x4 image)
    #   left:  LL=10, LH=2, HL=4, HH=0 -> a=(10+2+4+0)/2=8, b=(10+2-4-0)/2=4, c=(10-2+4-0)/2=6, d=(10-2-4+0)/2=2
    #   right: LL=1,  LH=0, HL=0, HH=1 -> a=(1+0+0+1)/2=1,  b=(1+0-0-1)/2=0,  c=(1-0+0-1)/2=0,  d=(1-0-0+1)/2=1
    # channel 1: LL=2 and 6, no details -> flat blocks of 2/2=1 and 6/2=3
    ll = torch.tensor([[[[10., 1.]], [[2., 6.]]]], dtype=torch.float64)  # [b=1, c=2, h=1, w=2]
    high = torch.zeros(1, 2, 3, 1, 2, dtype=torch.float64)              # [b, c, (LH, HL, HH), h, w]
    high[0, 0, :, 0, 0] = torch.tensor([2., 4., 0.])
    high[0, 0, :, 0, 1] = torch.tensor([0., 0., 1.])
    expected = torch.tensor([[[[8., 4., 1., 0.],
                               [6., 2., 0., 1.]],
                              [[1., 1., 3., 3.],
                               [1., 1., 3., 3.]]]], dtype=torch.float64)
    # the filter buffers are float32 (as pytorch_wavelets' in the checkpoint): 1/sqrt(2) ** 2 = 0.5 to ~3e-8
    torch.testing.assert_close(DWTInverse()((ll.float(), [high.float()])), expected.float(), rtol=0, atol=1e-6)
    torch.testing.assert_close(DWTInverse().double()((ll, [high])), expected, rtol=0, atol=1e-6)

    # the DWT decoder's channel layout: [low R, G, B | R: LH HL HH | G: LH HL HH | B: LH HL HH]
    vae = _tiny(dwt=True)
    bands = torch.zeros(1, 12, 1, 2)
    bands[0, 0] = torch.tensor([[10., 1.]])   # red low-pass
    bands[0, 3:6, 0, 0] = torch.tensor([2., 4., 0.])  # red LH, HL, HH at the left position
    bands[0, 5, 0, 1] = 1.                     # red HH at the right position
    bands[0, 2] = torch.tensor([[2., 6.]])     # blue low-pass
    img = vae.model.decoder.dwt_to_img(bands)
    zeros = torch.zeros(2, 4)
    torch.testing.assert_close(img[0], torch.stack([expected[0, 0].float(), zeros, expected[0, 1].float()]),
                               rtol=0, atol=1e-6)


def test_inverse_haar_matches_pywt():
    try:
        import pywt
    except ImportError:
        if os.environ.get('CI') == 'true':
            raise
        pytest.skip('PyWavelets not installed')
    rng = np.random.default_rng(0)
    ll = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    high = rng.standard_normal((2, 3, 3, 5, 6)).astype(np.float32)
    ref = pywt.idwt2((ll, (high[:, :, 0], high[:, :, 1], high[:, :, 2])), 'haar', mode='zero')
    out = DWTInverse()((torch.from_numpy(ll), [torch.from_numpy(high)]))
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(DWTInverse().g0_col.flatten().numpy(), pywt.Wavelet('db1').rec_lo, rtol=1e-7)
    np.testing.assert_allclose(DWTInverse().g1_row.flatten().numpy(), pywt.Wavelet('db1').rec_hi, rtol=1e-7)


def test_dwt_decoder_channel_split_and_size():
    vae = _tiny(dwt=True)
    ids = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = vae.decode(ids)
        assert out.shape == (2, 3, 64, 64)  # 2x the f8 size
        bands = torch.randn(2, 12, 4, 4)
        img = vae.model.decoder.dwt_to_img(bands)
        high = torch.stack([bands[:, 3 + 3 * c: 6 + 3 * c] for c in range(3)], dim=1)  # [b, colour, band, h, w]
        torch.testing.assert_close(img, vae.model.decoder.idwt((bands[:, :3], [high])))
        # the decoder uses its own post_quant_conv, not the top-level one
        z = vae.model.quantize.embed(ids).reshape(2, 4, 4, 32).permute(0, 3, 1, 2)
        ref = vae.model.decoder.dwt_to_img(vae.model.decoder.decoder(vae.model.decoder.post_quant_conv(z)))
        torch.testing.assert_close(out, (ref.clamp(-1, 1) + 1) / 2)
        vae.model.post_quant_conv.weight.add_(1.0)
        torch.testing.assert_close(vae.decode(ids), out)


# ---------------------------------------------------------------- inference mode, batching, input errors

@pytest.mark.parametrize('dwt', [False, True])
def test_encode_decode_batched_under_inference_mode(dwt):
    vae = _tiny(dwt=dwt)
    assert all(p.requires_grad for p in vae.parameters())  # as get_vae returns it; no no_grad() around calls
    calls = []
    record = lambda module, args, out: calls.append((type(module).__name__, args[0].shape[0],  # noqa: E731
                                                     torch.is_inference_mode_enabled()))
    vae.model.encoder.register_forward_hook(record)
    vae.model.decoder.register_forward_hook(record)
    img = _images(b=3)
    ids = vae.get_codebook_indices(img)
    out = vae.decode(ids)
    # one encoder call and one decoder call for the whole batch, both in inference mode
    assert calls == [('Encoder', 3, True), (type(vae.model.decoder).__name__, 3, True)]
    for t in (ids, out):
        assert not t.requires_grad and t.grad_fn is None
        assert not t.is_inference()  # an ordinary tensor: in-place edits and autograd use are fine
    out.mul_(1.0)
    ids[0, 0] = 1

    ids = vae.get_codebook_indices(img)
    assert torch.equal(ids, torch.cat([vae.get_codebook_indices(img[i:i + 1]) for i in range(3)]))
    one_by_one = torch.cat([vae.decode(ids[i:i + 1]) for i in range(3)])
    # oneDNN may pick another convolution algorithm for another batch size: float32 rounding only
    torch.testing.assert_close(vae.decode(ids), one_by_one, rtol=0, atol=1e-5)
    calls.clear()
    chunked = vae.decode(ids, batch_size=2)
    assert [c[1] for c in calls] == [2, 1] and all(c[2] for c in calls)
    torch.testing.assert_close(chunked, one_by_one, rtol=0, atol=1e-5)
    assert vae.decode(ids[:0]).shape == (0, 3, 64 if dwt else 32, 64 if dwt else 32)
    with pytest.raises(ValueError, match='batch_size'):
        vae.decode(ids, batch_size=0)


def test_decode_rejects_bad_ids():
    vae = _tiny()  # n_embed = 64
    ids = torch.zeros(2, 16, dtype=torch.long)
    bad = ids.clone()
    bad[0, 3], bad[1, 7] = 64, -2
    with pytest.raises(ValueError, match=re.escape('must be in [0, 64)') + r'.*min -2 to max 64'):
        vae.decode(bad)
    with pytest.raises(ValueError, match=re.escape('[0, 64)') + r'.*min 8191 to max 8191'):
        vae.decode(torch.full((1, 16), 8191))
    with pytest.raises(ValueError, match=r'perfect square.*got 15'):
        vae.decode(ids[:, :15])
    with pytest.raises(ValueError, match=r'perfect square.*got 0'):
        vae.decode(ids[:, :0])
    with pytest.raises(ValueError, match=r'1-D tensor of shape \(16,\).*unsqueeze\(0\)'):
        vae.decode(ids[0])
    with pytest.raises(ValueError, match=r'3-D tensor of shape \(2, 4, 4\)'):
        vae.decode(ids.reshape(2, 4, 4))
    with pytest.raises(TypeError, match='integer tensor, got dtype torch.float32'):
        vae.decode(ids.float())
    with pytest.raises(TypeError, match='tensor'):
        vae.decode(ids.tolist())
    assert vae.decode(torch.full((1, 16), 63, dtype=torch.int32)).shape == (1, 3, 32, 32)  # any int dtype


def test_get_codebook_indices_rejects_bad_images():
    vae = _tiny()  # f = 8
    with pytest.raises(ValueError, match=r'3 channels.*got 1 channel\(s\) \(grayscale\?\), shape \(2, 1, 32, 32\)'):
        vae.get_codebook_indices(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r'3 channels.*got 4 channel\(s\) \(RGBA\?\).*convert them to RGB'):
        vae.get_codebook_indices(torch.rand(2, 4, 32, 32))
    with pytest.raises(ValueError, match=r'one image \(3, 32, 32\).*unsqueeze\(0\)'):
        vae.get_codebook_indices(torch.rand(3, 32, 32))
    with pytest.raises(TypeError, match=r'float images.*torch.uint8'):
        vae.get_codebook_indices(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r'4x4 px.*smaller than one token \(8x8 px\)'):
        vae.get_codebook_indices(torch.rand(1, 3, 4, 4))
    with pytest.raises(ValueError, match=r'multiples of the downsampling factor 8, got 30x32 px'):
        vae.get_codebook_indices(torch.rand(1, 3, 30, 32))
    with pytest.raises(ValueError, match=r'factor 8, got 32x20 px'):
        vae.get_codebook_indices(torch.rand(1, 3, 32, 20))
    with pytest.raises(TypeError, match='PIL'):
        vae.get_codebook_indices(Image.new('RGB', (32, 32)))
    assert vae.get_codebook_indices(torch.rand(1, 3, 16, 40)).shape == (1, 2 * 5)  # rectangles are fine


# ---------------------------------------------------------------- checkpoints

def _save_plain(vae: VQGanGumbelVAE, path) -> None:
    sd = dict(vae.model.state_dict())
    sd['loss.discriminator.main.0.weight'] = torch.randn(4, 3, 4, 4)
    torch.save({'state_dict': sd, 'global_step': 10}, path)


def _save_dwt(vae: VQGanGumbelVAE, path) -> None:
    torch.save({'state_dict': dict(vae.state_dict())}, path)


def _outputs(vae: VQGanGumbelVAE):
    img = _images()
    ids = vae.get_codebook_indices(img)
    with torch.no_grad():
        return ids, vae.decode(ids)


@pytest.mark.parametrize('dwt', [False, True])
def test_checkpoint_round_trip_local_path(tmp_path, dwt):
    src = _tiny(dwt=dwt, seed=3)
    path = tmp_path / HF_FILENAMES[dwt]
    (_save_dwt if dwt else _save_plain)(src, path)
    if dwt:
        keys = torch.load(path, weights_only=True)['state_dict']
        for key in ('model.encoder.conv_in.weight', 'model.quantize.embed.weight', 'model.quant_conv.bias',
                    'model.decoder.post_quant_conv.weight', 'model.decoder.decoder.conv_out.weight',
                    'model.decoder.idwt.g0_col', 'model.decoder.idwt.g1_col', 'model.decoder.idwt.g0_row',
                    'model.decoder.idwt.g1_row', 'model.post_quant_conv.weight'):
            assert key in keys
    loaded = get_vae(dwt=dwt, path=path, config=TINY)
    assert not loaded.training
    for a, b in zip(_outputs(src), _outputs(loaded)):
        assert torch.equal(a, b)
    assert not torch.equal(_outputs(_tiny(dwt=dwt, seed=4))[1], _outputs(loaded)[1])


def _fill_hub_cache(cache_dir, filename: str, write) -> None:
    commit = 'a' * 40
    repo = cache_dir / ('models--' + HF_REPO_ID.replace('/', '--'))
    snapshot = repo / 'snapshots' / commit
    snapshot.mkdir(parents=True)
    (repo / 'refs').mkdir()
    (repo / 'refs' / 'main').write_text(commit)
    write(snapshot / filename)


@pytest.mark.parametrize('dwt', [False, True])
def test_checkpoint_round_trip_through_hf_hub_cache(tmp_path, monkeypatch, dwt):
    import huggingface_hub.constants
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_OFFLINE', True)
    src = _tiny(dwt=dwt, seed=7)
    _fill_hub_cache(tmp_path, HF_FILENAMES[dwt], lambda p: (_save_dwt if dwt else _save_plain)(src, p))
    loaded = get_vae(pretrained=True, dwt=dwt, cache_dir=str(tmp_path), config=TINY)
    for a, b in zip(_outputs(src), _outputs(loaded)):
        assert torch.equal(a, b)


def test_checkpoint_errors(tmp_path):
    src = _tiny()
    sd = dict(src.model.state_dict())

    missing = dict(sd)
    del missing['decoder.up.1.block.0.conv1.weight']
    torch.save({'state_dict': missing}, tmp_path / 'missing.ckpt')
    with pytest.raises(CheckpointMismatchError, match=r'missing keys: decoder\.up\.1\.block\.0\.conv1\.weight'):
        get_vae(path=tmp_path / 'missing.ckpt', config=TINY)

    wrong = dict(sd)
    wrong['quantize.embed.weight'] = torch.zeros(65, 32)
    torch.save({'state_dict': wrong}, tmp_path / 'shape.ckpt')
    with pytest.raises(CheckpointMismatchError, match=r'quantize\.embed\.weight: checkpoint \(65, 32\)'):
        get_vae(path=tmp_path / 'shape.ckpt', config=TINY)

    # a checkpoint of another architecture: the error names keys and the config
    _save_plain(_tiny(), tmp_path / 'tiny.ckpt')
    pattern = r'(?s)config=VQGanConfig\(ch=64.*wrong shapes: encoder\.conv_in\.weight'
    with pytest.raises(CheckpointMismatchError, match=pattern):
        get_vae(path=tmp_path / 'tiny.ckpt', config=dict(TINY, ch=64))

    # extra weights inside the model are an error (here: one more res block), outside (loss.*) ignored
    extra = dict(sd)
    extra['encoder.down.0.block.1.conv1.weight'] = torch.zeros(1)
    torch.save({'state_dict': extra}, tmp_path / 'extra.ckpt')
    with pytest.raises(CheckpointMismatchError, match=r'unexpected keys: encoder\.down\.0\.block\.1'):
        get_vae(path=tmp_path / 'extra.ckpt', config=TINY)

    # DWT format loads strictly and format mix-ups get a hint
    _save_dwt(_tiny(dwt=True), tmp_path / 'dwt.ckpt')
    with pytest.raises(CheckpointMismatchError, match='pass dwt=True'):
        get_vae(path=tmp_path / 'dwt.ckpt', config=TINY)
    with pytest.raises(CheckpointMismatchError, match='pass dwt=False'):
        get_vae(path=tmp_path / 'tiny.ckpt', dwt=True, config=TINY)
    dwt_sd = dict(_tiny(dwt=True).state_dict())
    dwt_sd['loss.x'] = torch.zeros(1)
    torch.save({'state_dict': dwt_sd}, tmp_path / 'dwt_extra.ckpt')
    with pytest.raises(CheckpointMismatchError, match=r'unexpected keys: loss\.x'):
        get_vae(path=tmp_path / 'dwt_extra.ckpt', dwt=True, config=TINY)

    torch.save([1, 2], tmp_path / 'list.ckpt')
    with pytest.raises(CheckpointMismatchError, match='state_dict'):
        get_vae(path=tmp_path / 'list.ckpt', config=TINY)
    with pytest.raises(FileNotFoundError):
        get_vae(path=tmp_path / 'nope.ckpt', config=TINY)


def test_truncated_or_corrupt_checkpoint(tmp_path):
    _save_plain(_tiny(), tmp_path / 'good.ckpt')
    data = (tmp_path / 'good.ckpt').read_bytes()
    cases = {
        'half.ckpt': (data[:len(data) // 2], 'zip central directory'),  # an interrupted download
        'tail.ckpt': (data[:-20], 'truncated or corrupt'),
        'empty.ckpt': (b'', 'empty'),
        'random.ckpt': (bytes(range(256)) * 8, 'truncated or corrupt'),
        'page.ckpt': (b'<html><body>502 Bad Gateway</body></html>\n', 'truncated or corrupt'),
    }
    for name, (blob, what) in cases.items():
        path = tmp_path / name
        path.write_bytes(blob)
        with pytest.raises(CorruptCheckpointError, match=re.escape(str(path)) + '.*' + what) as info:
            get_vae(path=path, config=TINY)
        assert isinstance(info.value, ValueError) and 'truncated or corrupt' in str(info.value)
        assert info.value.__cause__ is not None  # torch.load's own error stays attached


def _fake_module(monkeypatch, dotted: str) -> types.ModuleType:
    """Register ``dotted`` (and its parents) in ``sys.modules`` for the time of a test."""
    parts = dotted.split('.')
    for i in range(1, len(parts) + 1):
        monkeypatch.setitem(sys.modules, '.'.join(parts[:i]), types.ModuleType('.'.join(parts[:i])))
    return sys.modules[dotted]


@pytest.mark.parametrize('zip_format', [True, False])
def test_checkpoint_with_unimportable_training_objects(tmp_path, monkeypatch, zip_format):
    """Lightning-style checkpoints pickle objects the safe loader refuses and whose classes may be absent."""
    parsing = _fake_module(monkeypatch, 'pytorch_lightning.utilities.parsing')
    callbacks = _fake_module(monkeypatch, 'pytorch_lightning.callbacks.model_checkpoint')

    class HParams:
        def __init__(self):
            self.lr = 1e-4

    class AttributeDict(dict):
        pass

    class ModelCheckpoint:
        pass

    for module, cls in ((parsing, HParams), (parsing, AttributeDict), (callbacks, ModelCheckpoint)):
        cls.__module__, cls.__qualname__ = module.__name__, cls.__name__
        setattr(module, cls.__name__, cls)
    src = _tiny(seed=11)
    hparams = AttributeDict(lr=1e-4, ddconfig={'ch': 32})
    torch.save({'state_dict': src.model.state_dict(), 'hparams': HParams(), 'hyper_parameters': hparams,
                'callbacks': {ModelCheckpoint: {'best_model_score': torch.tensor(0.5)}}}, tmp_path / 'pl.ckpt',
               _use_new_zipfile_serialization=zip_format)  # legacy files name one refused global at a time
    for name in ('pytorch_lightning', 'pytorch_lightning.utilities', 'pytorch_lightning.callbacks',
                 parsing.__name__, callbacks.__name__):
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(pickle.UnpicklingError):  # the plain safe loader refuses it: the stand-in path is taken
        torch.load(tmp_path / 'pl.ckpt', weights_only=True)
    loaded = get_vae(path=tmp_path / 'pl.ckpt', config=TINY)
    assert torch.equal(_outputs(src)[1], _outputs(loaded)[1])
    assert 'pytorch_lightning' not in sys.modules  # nothing was imported to read it


def test_get_vae_random_and_named(tmp_path, monkeypatch):
    vae = get_vae(pretrained=False, config=TINY)
    assert isinstance(vae, VQGanGumbelVAE) and not vae.training
    assert vae.num_tokens == 64 and vae.image_size == 32 and vae.image_tokens_per_side == 4
    assert vae.to('cpu') is vae

    src = _tiny(seed=5)
    _save_plain(src, tmp_path / 'tiny.ckpt')
    monkeypatch.setitem(vae_pkg.NAMED_VAES, 'tiny-test', (str(tmp_path / 'tiny.ckpt'), TINY))
    named = get_vae(name='tiny-test')
    assert torch.equal(_outputs(src)[1], _outputs(named)[1])
    with pytest.raises(KeyError, match='tiny-test'):
        get_vae(name='nope')
    with pytest.raises(ValueError, match='already gives'):
        get_vae(name='tiny-test', config=TINY)
    with pytest.raises(ValueError, match='pretrained=False'):
        get_vae(pretrained=False, path=tmp_path / 'tiny.ckpt', config=TINY)


# ---------------------------------------------------------------- preprocessing

@pytest.mark.parametrize('wh', [(40, 30), (30, 47), (33, 33), (64, 20)])
def test_preprocess_image_matches_torchvision(wh):
    T = pytest.importorskip('torchvision.transforms')
    rng = np.random.default_rng(sum(wh))
    pil = Image.fromarray(rng.integers(0, 256, (wh[1], wh[0], 3), dtype=np.uint8))
    out = preprocess_image(pil, 16)
    assert out.shape == (3, 16, 16) and out.dtype == torch.float32
    assert 0 <= out.min() and out.max() <= 1
    ref = T.Compose([T.RandomResizedCrop(16, scale=(1., 1.), ratio=(1., 1.)), T.ToTensor()])(pil)
    assert torch.equal(out, ref)


def test_preprocess_image_converts_to_rgb():
    gray = Image.fromarray(np.full((10, 12), 255, dtype=np.uint8), mode='L')
    out = preprocess_image(gray, 8)
    assert out.shape == (3, 8, 8) and torch.all(out == 1)
    with pytest.raises(ValueError, match='size'):
        preprocess_image(gray, 0)


def _bands_image(width: int, height: int) -> Image.Image:
    """Three equal bands, red | blue | green, along the longer side."""
    array = np.zeros((height, width, 3), dtype=np.uint8)
    if width >= height:
        third = width // 3
        array[:, :third, 0], array[:, third:2 * third, 2], array[:, 2 * third:, 1] = 255, 255, 255
    else:
        third = height // 3
        array[:third, :, 0], array[third:2 * third, :, 2], array[2 * third:, :, 1] = 255, 255, 255
    return Image.fromarray(array)


def test_preprocess_image_crops_non_square_to_the_centre():
    blue = torch.tensor([0., 0., 1.]).reshape(3, 1, 1).expand(3, 8, 8)
    for wh in [(36, 12), (12, 36)]:  # the centred 12x12 square is exactly the blue band
        assert torch.equal(preprocess_image(_bands_image(*wh), 8), blue)


def test_preprocess_image_modes_and_errors():
    rng = np.random.default_rng(0)
    rgba = Image.fromarray(rng.integers(0, 256, (16, 16, 4), dtype=np.uint8), mode='RGBA')
    palette = rgba.convert('RGB').quantize(colors=16)
    assert palette.mode == 'P'
    gray_alpha = Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8), mode='L').convert('LA')
    out = preprocess_image(palette, 16)
    ref = torch.from_numpy(np.asarray(palette.convert('RGB'), dtype=np.uint8).copy()).permute(2, 0, 1) / 255
    assert torch.equal(out, ref)  # the palette looked up, then no resize
    for img in (rgba, gray_alpha):  # transparency composited on white (issue 11: alpha was dropped)
        array = np.asarray(img.convert('RGBA'), dtype=np.float64) / 255
        alpha = array[..., 3:]
        ref = torch.from_numpy(array[..., :3] * alpha + (1 - alpha)).permute(2, 0, 1).float()
        out = preprocess_image(img, 16)
        assert out.shape == (3, 16, 16) and (out - ref).abs().max() <= 1.01 / 255

    with pytest.raises(ValueError, match=r'5x40 px \(W x H\) is smaller than one token \(8x8 px\)'):
        preprocess_image(Image.new('RGB', (5, 40)), 16)
    with pytest.raises(ValueError, match=r'size=4 px is smaller than one token'):
        preprocess_image(Image.new('RGB', (40, 40)), 4)
    with pytest.raises(TypeError, match=r'PIL image.*Tensor of shape \(1, 16, 16\): 1 channel\(s\) \(grayscale\?\)'):
        preprocess_image(torch.rand(1, 16, 16), 16)
    with pytest.raises(TypeError, match=r'PIL image.*\(4, 16, 16\): 4 channel\(s\) \(RGBA\?\)'):
        preprocess_image(torch.rand(4, 16, 16), 16)
    with pytest.raises(TypeError, match=r'PIL image.*ndarray of shape \(16, 16, 4\): 4 channel'):
        preprocess_image(np.zeros((16, 16, 4), dtype=np.uint8), 16)
    with pytest.raises(TypeError, match='PIL'):
        preprocess_image('image.png', 16)


# ---------------------------------------------------------------- issue 11: loading

def test_non_finite_vae_weights_are_refused(tmp_path):
    from rudolph.errors import CheckpointError

    sd = {k: v.clone() for k, v in _tiny().model.state_dict().items()}
    sd['decoder.conv_out.bias'][1] = float('nan')
    torch.save({'state_dict': sd}, tmp_path / 'nan.ckpt')
    with pytest.raises(CheckpointError, match=re.escape(str(tmp_path / 'nan.ckpt')) + r".*'decoder\.conv_out\.bias'"):
        get_vae(path=tmp_path / 'nan.ckpt', config=TINY)


def test_lightning_checkpoint_with_other_objects_is_unsafe(tmp_path, monkeypatch):
    from rudolph.errors import UnsafeCheckpointError

    module = _fake_module(monkeypatch, 'somelib.hooks')

    class Hook:
        pass

    Hook.__module__, Hook.__qualname__ = module.__name__, 'Hook'
    module.Hook = Hook
    torch.save({'state_dict': _tiny().model.state_dict(), 'hook': Hook()}, tmp_path / 'hook.ckpt')
    with pytest.raises(UnsafeCheckpointError, match=re.escape(str(tmp_path / 'hook.ckpt')) + '.*somelib.hooks.Hook'):
        get_vae(path=tmp_path / 'hook.ckpt', config=TINY)


def _offline(monkeypatch):
    import huggingface_hub.constants
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_OFFLINE', True)


@pytest.mark.parametrize('dwt', [False, True])
def test_offline_empty_cache_says_how_to_get_the_vqgan(tmp_path, monkeypatch, dwt):
    from rudolph.errors import WeightsNotFoundError

    _offline(monkeypatch)
    with pytest.raises(WeightsNotFoundError) as info:
        get_vae(dwt=dwt, cache_dir=str(tmp_path))
    message = str(info.value)
    assert f'hf download {HF_REPO_ID} {HF_FILENAMES[dwt]} --cache-dir {tmp_path}' in message
    assert 'HF_HUB_OFFLINE' in message and "get_vae(path=" in message


def test_get_vae_takes_every_model_name(tmp_path, monkeypatch):
    from rudolph.errors import WeightsNotFoundError
    from rudolph.model import MODELS

    _offline(monkeypatch)
    packaged = get_vae('tiny-shapes')
    assert torch.equal(get_vae(name='tiny-shapes').model.quantize.embed.weight, packaged.model.quantize.embed.weight)
    published = [name for name, spec in MODELS.items() if not spec.get('vae_path')]
    assert '350M' in published
    for name in published:  # ruDALL-E's VQGAN: here the (empty) hub cache is asked for it
        for call in (lambda: get_vae(name, cache_dir=str(tmp_path)),
                     lambda: get_vae(name=name, cache_dir=str(tmp_path))):
            with pytest.raises(WeightsNotFoundError, match=f'{HF_REPO_ID}/{HF_FILENAMES[False]}'):
                call()
    with pytest.raises(KeyError, match=r"unknown VAE name 'nope'.*350M"):
        get_vae(name='nope')


# ---------------------------------------------------------------- issue 11: every PIL mode

def _pixels(img) -> np.ndarray:
    return (preprocess_image(img, 8).permute(1, 2, 0).numpy() * 255).round().astype(int)


def test_preprocess_16_bit_and_float_greyscale_are_scaled():
    ramp = np.linspace(0, 1, 64).reshape(8, 8)
    expected = np.repeat(np.rint(ramp * 255).astype(int)[..., None], 3, axis=2)
    i16 = Image.fromarray((ramp * 65535).round().astype(np.uint16))
    assert i16.mode == 'I;16'
    i32 = Image.fromarray((ramp * 65535).round().astype(np.int32))
    assert i32.mode == 'I'
    f32 = Image.fromarray(ramp.astype(np.float32))
    assert f32.mode == 'F'
    for img in (i16, i32, f32, i16.convert('I')):
        assert np.abs(_pixels(img) - expected).max() <= 1, img.mode  # was all-white for I;16


def test_preprocess_16_bit_png_round_trip(tmp_path):
    ramp = (np.linspace(0, 1, 64).reshape(8, 8) * 65535).round().astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / 'deep.png')
    with Image.open(tmp_path / 'deep.png') as img:
        out = _pixels(img)
    assert np.abs(out[..., 0] - np.rint(ramp / 65535 * 255)).max() <= 1 and out.min() == 0


def test_preprocess_transparency_cmyk_and_exif():
    # LA: grey 100 at alpha 0 -> white; at alpha 255 -> 100
    la = np.zeros((8, 8, 2), dtype=np.uint8)
    la[..., 0], la[:4, :, 1] = 100, 255
    out = _pixels(Image.fromarray(la, mode='LA'))
    assert (out[:4] == 100).all() and (out[4:] == 255).all()
    # P with a transparent palette entry: index 1 (red) opaque, index 0 transparent -> white
    p = Image.fromarray(np.array([[0, 1] * 4] * 8, dtype=np.uint8), mode='P')
    p.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    p.info['transparency'] = 0
    out = _pixels(p)
    assert (out[:, 0::2] == 255).all() and (out[:, 1::2] == [255, 0, 0]).all()
    # CMYK: pure cyan -> (0, 255, 255)
    cmyk = Image.new('CMYK', (8, 8), (255, 0, 0, 0))
    assert (_pixels(cmyk) == [0, 255, 255]).all()
    # EXIF orientation 6 (rotate 90 degrees clockwise to view): left half red becomes top half red
    stored = np.zeros((8, 16, 3), dtype=np.uint8)
    stored[:, :8] = (255, 0, 0)
    jpeg = Image.fromarray(stored)
    exif = jpeg.getexif()
    exif[0x0112] = 6
    import io
    buf = io.BytesIO()
    jpeg.save(buf, 'JPEG', exif=exif.tobytes(), quality=100)
    with Image.open(io.BytesIO(buf.getvalue())) as img:
        img.load()
        up = np.asarray(to_rgb(img)).astype(int)
    assert up.shape == (16, 8, 3)  # upright: 8 wide, 16 high
    assert (up[:6, :, 0] > 200).all() and (up[10:, :, 0] < 60).all()


def test_one_picture_reader_for_jobs_fine_tuning_and_the_app(tmp_path):
    from rudolph.app.handlers import open_image as app_open_image
    from rudolph.errors import ImageFileError, InputError
    from rudolph.jobs.inputs import open_image

    good = tmp_path / 'good.png'
    Image.new('I;16', (4, 3), 40000).save(good)
    img = open_image(str(good))
    assert img.size == (4, 3) and img.mode.startswith('I')
    assert to_rgb(img).getpixel((0, 0))[0] == round(40000 / 65535 * 255)
    corrupt = tmp_path / 'corrupt.png'
    corrupt.write_bytes(b'not an image at all')
    for path, message in [(corrupt, 'cannot read the image .*corrupt.png'),
                          (tmp_path / 'nope.png', 'image not found: .*nope.png'), (None, 'image not found: None')]:
        with pytest.raises(ImageFileError, match=message) as caught:
            open_image(path)
        assert isinstance(caught.value, InputError) and isinstance(caught.value, OSError)
    with pytest.raises(ImageFileError, match='image prompt: cannot read the image .*corrupt.png'):
        app_open_image(str(corrupt), 'image prompt')
