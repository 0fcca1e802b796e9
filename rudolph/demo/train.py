"""Rebuild the three tiny-shapes weight files from scratch: ``python -m rudolph.demo.train``.

1. **Tokenizer**: :func:`rudolph.tokenizer.train_bpe` on every caption / question / answer
   of the training pictures, written in YouTokenToMe's file format.
2. **VQGAN** (:class:`rudolph.vae.VQGanGumbelVAE`, 64 px -> 8x8 codes of 2048): trained with
   a *supervised codebook*, which converges in minutes on a CPU where end-to-end Gumbel
   training would take hours. The codes describe each picture's *canonical* render (the
   shape at its named size and position, without the few pixels of jitter): each 8x8 patch
   of it gets a target code (:func:`target_codes`): one of 3 background codes when it holds
   no shape pixel, else ``(colour, shape, edge pattern)`` where the edge pattern is the
   nearest of 56 k-means prototypes of that shape's patch coverage masks (pattern 0 = fully
   covered). A caption then fixes the whole code grid, which is what makes text-to-image
   learnable by a 4-layer model in minutes. The codebook vectors ``quantize.embed`` are
   fixed to what each code stands for (:func:`code_features`). The encoder (+ ``quant_conv``
   + ``quantize.proj``) learns to map every jittered picture to those codes by cross-entropy
   on its codebook logits, so ``get_codebook_indices``' argmax returns them
   (``--encoder-steps``); the decoder learns to draw the canonical pictures from the target
   codes (L1 + L2, shape pixels weighted up; ``--decoder-steps``), so reconstructions keep
   colour, shape, size and position but not the jitter. The weights are a plain
   ruDALL-E-format checkpoint (fp16).
3. **RuDOLPH** (``MODEL_PARAMS``): trained with :mod:`rudolph.finetune` (``prepare_dataset`` +
   ``train``, with ``first_image_token=True`` so that text-to-image sampling starts from a
   trained distribution) on rows of two tasks: ``t2i`` (caption left -> image codes) and
   ``i2t`` (image -> caption / ``вопрос: ... ответ: ...`` / ``цвет фигуры: ...`` right text;
   empty left text, as the API uses for captioning and VQA), over the target codes
   (:class:`CodeTable`), in ``--rudolph-stages`` (fresh optimizer and cosine schedule each).
   Its image embeddings start from what the codes stand for (:func:`structured_image_init`).

Shipped weights: ``python -m rudolph.demo.train`` with the defaults, in one run.

Seeds are fixed; the run is deterministic on a given machine (``--threads``, default 2: use 1
when another process shares the two cores; oversubscribed OpenMP threads make the small
convolutions many times slower).
"""
import argparse
import json
import os
import shutil
import tempfile
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from rudolph.demo import (
    MODEL_PARAMS,
    NAME,
    PLAIN_TEXT_VOCAB,
    RUDOLPH_PATH,
    T2I_SAMPLING,
    TINY_SPC_TOKENS,
    TOKENIZER_PATH,
    VQGAN_CONFIG,
    VQGAN_PATH,
)
from rudolph.demo import shapes as S
from rudolph.finetune import TrainConfig, prepare_dataset, train
from rudolph.io.safetensors import write_safetensors
from rudolph.model import get_rudolph_model, ruDolphModel
from rudolph.model.config import RudolphConfig
from rudolph.model.configs import VQA_TEMPLATE
from rudolph.pretrained.folder import pretrained_config, write_description
from rudolph.tokenizer import get_tokenizer, train_bpe
from rudolph.vae import VQGanGumbelVAE
from rudolph.vae.model import read_checkpoint_state_dict

TRAIN_SEED = 0  # the dataset seed of training pictures (evaluation uses EVAL_SEED, see evaluate.py)
N_BG = len(S.BACKGROUNDS)
N_COLOURS = len(S.COLOURS)
N_SHAPES = len(S.SHAPES)
#: edge patterns per (colour, shape): the codebook holds N_BG + N_COLOURS * N_SHAPES * N_PATTERNS codes
N_PATTERNS = (VQGAN_CONFIG['n_embed'] - N_BG) // (N_COLOURS * N_SHAPES)


def _log(msg: str) -> None:
    print(f'[{time.strftime("%H:%M:%S")}] {msg}', flush=True)


# ----------------------------------------------------------------------------- data
def images_tensor(samples: Sequence[S.Sample], canonical: bool = False) -> torch.Tensor:
    """``[n, 3, 64, 64]`` float in ``[0, 1]`` (``canonical``: the pictures without their jitter)."""
    arr = np.stack([np.asarray(s.canonical_image if canonical else s.image, dtype=np.uint8) for s in samples])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div(255)


def coverage(samples: Sequence[S.Sample], images: torch.Tensor) -> np.ndarray:
    """Per-pixel shape coverage ``[n, 64, 64]`` in ``[0, 1]`` (projection on the bg -> fg colour line)."""
    fg = np.array([S.COLOURS[s.colour][0] for s in samples], dtype=np.float32) / 255
    bg = np.array([S.BACKGROUNDS[s.background][0] for s in samples], dtype=np.float32) / 255
    d = fg - bg
    img = images.permute(0, 2, 3, 1).numpy()
    alpha = ((img - bg[:, None, None]) * d[:, None, None]).sum(-1) / (d * d).sum(-1)[:, None, None]
    return alpha.clip(0, 1)


def patches(alpha: np.ndarray) -> np.ndarray:
    """``[n, 64, 64]`` -> ``[n, 64 patches, 64 values]`` (row-major 8x8 grid of 8x8 patches)."""
    n = alpha.shape[0]
    return alpha.reshape(n, 8, 8, 8, 8).transpose(0, 1, 3, 2, 4).reshape(n, 64, 64)


def fit_patterns(alpha: np.ndarray, k: int = N_PATTERNS, iters: int = 25, seed: int = 0) -> np.ndarray:
    """Edge-pattern prototypes ``[k, 64]``: pattern 0 is full coverage, the rest k-means of partial patches."""
    p = patches(alpha).reshape(-1, 64)
    m = p.mean(1)
    edge = p[(m > 0.02) & (m < 0.98)].astype(np.float32)
    rng = np.random.default_rng(seed)
    centroids = edge[rng.choice(len(edge), k - 1, replace=False)].copy()
    for _ in range(iters):
        d = (edge ** 2).sum(1)[:, None] - 2 * edge @ centroids.T + (centroids ** 2).sum(1)[None]
        assign = d.argmin(1)
        counts = np.bincount(assign, minlength=k - 1)
        sums = np.zeros_like(centroids)
        np.add.at(sums, assign, edge)
        empty = counts == 0
        centroids[~empty] = sums[~empty] / counts[~empty, None]
        if empty.any():
            centroids[empty] = edge[rng.choice(len(edge), int(empty.sum()), replace=False)]
    return np.concatenate([np.ones((1, 64), np.float32), centroids])


def fit_shape_patterns(samples: Sequence[S.Sample], alpha: np.ndarray, seed: int = 0) -> np.ndarray:
    """Edge patterns of each shape, ``[N_SHAPES, N_PATTERNS, 64]`` (k-means over that shape's pictures)."""
    shapes = np.array([s.shape for s in samples])
    return np.stack([fit_patterns(alpha[shapes == name], seed=seed) for name in S.SHAPES])


def code_of(colour: np.ndarray, shape: np.ndarray, pattern: np.ndarray) -> np.ndarray:
    """Codebook index of a shape patch (indices into ``COLOURS``, ``SHAPES`` and the shape's patterns)."""
    return N_BG + (colour * N_SHAPES + shape) * N_PATTERNS + pattern


def target_codes(samples: Sequence[S.Sample], alpha: np.ndarray, patterns: np.ndarray) -> torch.Tensor:
    """Target VQGAN codes ``[n, 64]``.

    A patch without shape pixels gets its background's code (``0 .. N_BG-1``); a patch
    touching the shape gets ``code_of(colour, shape, nearest pattern of that shape)``. The
    codes name the colour and the shape of every shape patch, so RuDOLPH reads both from
    any of them; the shape's own edge patterns keep its outline.
    """
    p = patches(alpha).astype(np.float32)  # [n, 64, 64]
    shape = np.array([list(S.SHAPES).index(s.shape) for s in samples])
    protos = patterns[shape]  # [n, K, 64]
    d = (p ** 2).sum(-1)[..., None] - 2 * np.einsum('npv,nkv->npk', p, protos) + (protos ** 2).sum(-1)[:, None]
    colour = np.array([list(S.COLOURS).index(s.colour) for s in samples])[:, None]
    bg = np.array([list(S.BACKGROUNDS).index(s.background) for s in samples])[:, None]
    codes = code_of(colour, shape[:, None], d.argmin(-1))
    codes = np.where(p.mean(-1) <= 0.02, np.broadcast_to(bg, codes.shape), codes)
    return torch.from_numpy(codes.astype(np.int64))


def code_features(patterns: np.ndarray) -> torch.Tensor:
    """What each code stands for, ``[n_embed, 64 + N_COLOURS + N_SHAPES + N_BG]``: the pattern's coverage
    (-1 .. 1), one-hot colour and shape, one-hot background (background codes only)."""
    n = VQGAN_CONFIG['n_embed']
    feats = torch.zeros(n, 64 + N_COLOURS + N_SHAPES + N_BG)
    feats[:N_BG, :64] = -1
    feats[torch.arange(N_BG), 64 + N_COLOURS + N_SHAPES + torch.arange(N_BG)] = 1
    codes = torch.arange(N_COLOURS * N_SHAPES * N_PATTERNS)
    colour, rest = codes // (N_SHAPES * N_PATTERNS), codes % (N_SHAPES * N_PATTERNS)
    shape, pattern = rest // N_PATTERNS, rest % N_PATTERNS
    rows = N_BG + codes
    feats[rows, :64] = torch.from_numpy(patterns).float()[shape, pattern] * 2 - 1
    feats[rows, 64 + colour] = 1
    feats[rows, 64 + N_COLOURS + shape] = 1
    return feats


# ----------------------------------------------------------------------------- VQGAN
def _reconstruction_weight(alpha: np.ndarray) -> torch.Tensor:
    """Shape pixels (and a ring around them) weigh more than the plain background in the reconstruction loss."""
    cover = torch.from_numpy(alpha).unsqueeze(1)
    return 1 + 4 * F.max_pool2d(cover, 3, stride=1, padding=1)


def _weighted_l1_l2(err: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return ((err.abs() + err ** 2) * weight).mean() / weight.mean()


def _train_part(vae, params: List[torch.nn.Parameter], loss_fn, n: int, steps: int, batch_size: int, lr: float,
                seed: int, name: str, path: Optional[str]):
    """One VQGAN phase: AdamW + one-cycle over ``params``, ``loss_fn(batch indices) -> (loss, log text)``;
    then save fp16 weights to ``path`` and reload them (what ships is the rounded copy)."""
    t0 = time.time()
    model = vae.model.train()
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    gen = torch.Generator().manual_seed(seed)
    for step in range(1, steps + 1):
        loss, text = loss_fn(torch.randint(0, n, (batch_size,), generator=gen))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps:
            _log(f'vqgan {name} step {step}/{steps}: {text()} ({time.time() - t0:.0f}s)')
    vae.eval()
    if path is not None:
        state = {k: v.detach().to(torch.float16) if v.is_floating_point() else v
                 for k, v in model.state_dict().items()}
        os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
        save_weights(state, path, vqgan=True)
        vae.load_checkpoint(path)
    return vae


def save_weights(state: Dict[str, torch.Tensor], path: str, vqgan: bool = False) -> None:
    """A weights file of the shipped folder: safetensors (the VQGAN's header records its architecture)."""

    meta = {'vqgan_config': json.dumps(VQGAN_CONFIG), 'dwt': 'false'} if vqgan else {}
    write_safetensors(state, path, meta)


def describe_folder(out: str, pictures: int, stages: str, seed: int) -> None:
    """``config.json`` and the model card beside the three files: the folder loads like any saved model."""

    sources = {'base_model': NAME, 'tokenizer': {'path': 'bpe.model'},
               'vae': {'path': 'vqgan.safetensors', 'config': dict(VQGAN_CONFIG), 'dwt': False}}
    steps = sum(int(stage.split(':')[0]) for stage in stages.split(','))
    training = {'data': f'{pictures} synthetic pictures of rudolph.demo.shapes (seed {TRAIN_SEED}), captions, '
                        'questions and zero-shot templates', 'steps': steps,
                'schedule': f'stages STEPS:LR {stages} (cosine each), batch 32', 'seed': seed,
                'recipe': 'python -m rudolph.demo.train'}
    config = pretrained_config(RudolphConfig(**MODEL_PARAMS), TINY_SPC_TOKENS, sources,
                               sampling={'text2image': dict(T2I_SAMPLING)}, training=training, dtype=torch.float16)
    write_description(out, config, NAME)


#: parameter prefixes (in ``vae.model``) each VQGAN phase trains; the codebook ``quantize.embed`` stays fixed
ENCODER_PARTS = ('encoder.', 'quant_conv.', 'quantize.proj.')
DECODER_PARTS = ('decoder.', 'post_quant_conv.')


def reuse_parts(vae, path: str, prefixes: Sequence[str]) -> None:
    """Load the weights under ``prefixes`` from the VQGAN checkpoint ``path`` (the rest stays as is)."""

    state = {k: v for k, v in read_checkpoint_state_dict(path).items() if k.startswith(tuple(prefixes))}
    if not state:
        raise ValueError(f'{path} holds no weights under {tuple(prefixes)}')
    own = vae.model.state_dict()
    missing = [k for k in own if k.startswith(tuple(prefixes)) and k not in state]
    if missing:
        raise ValueError(f'{path} lacks {missing[:3]} (is it a tiny-shapes VQGAN?)')
    vae.model.load_state_dict(state, strict=False)


def new_vqgan(patterns: np.ndarray, seed: int = 0):
    """A fresh tiny VQGAN whose codebook ``quantize.embed`` is the fixed :func:`code_features` table."""

    torch.manual_seed(seed)
    vae = VQGanGumbelVAE(config=VQGAN_CONFIG)
    table = code_features(patterns)
    with torch.no_grad():
        embed = vae.model.quantize.embed.weight
        embed.zero_()
        embed[:, :table.shape[1]] = table
        # Each phase saves fp16 weights and reloads them: starting from fp16-exact values makes a
        # phase's result the same whether or not the other phase ran before it in this process.
        for t in vae.model.state_dict().values():
            if t.is_floating_point():
                t.copy_(t.half())
    return vae


def train_encoder(vae, images: torch.Tensor, codes: torch.Tensor, steps: int = 1000, batch_size: int = 32,
                  lr: float = 3e-3, seed: int = 0, path: Optional[str] = VQGAN_PATH):
    """Encoder (+ ``quant_conv`` + ``quantize.proj``): cross-entropy on the codebook logits against the
    target codes, so that ``get_codebook_indices``' argmax returns them."""
    model = vae.model
    params = [p for n, p in model.named_parameters() if n.startswith(ENCODER_PARTS)]
    x_all, codes = images.mul(2).sub(1), codes.view(-1, 8, 8)

    def loss_fn(idx):
        logits = model.encode_to_logits(x_all[idx])
        loss = F.cross_entropy(logits, codes[idx])
        return loss, lambda: f'code CE {loss.item():.3f} (acc {(logits.argmax(1) == codes[idx]).float().mean():.3f})'

    return _train_part(vae, params, loss_fn, len(images), steps, batch_size, lr, seed, 'encoder', path)


def train_decoder(vae, images: torch.Tensor, codes: torch.Tensor, alpha: np.ndarray, steps: int = 1400,
                  batch_size: int = 16, lr: float = 2e-3, seed: int = 1, path: Optional[str] = VQGAN_PATH):
    """Decoder (+ ``post_quant_conv``) draws ``images`` (the canonical pictures) from the target codes'
    fixed codebook vectors (L1 + L2, shape pixels weighted up). The codebook stays what
    :func:`code_features` made it: every code already says its colour, shape and coverage, so the
    decoder learns one drawing rule for all."""
    model = vae.model
    params = [p for n, p in model.named_parameters() if n.startswith(DECODER_PARTS)]
    x_all, codes, weight = images.mul(2).sub(1), codes.view(-1, 8, 8), _reconstruction_weight(alpha)

    def loss_fn(idx):
        loss = _weighted_l1_l2(model.decode(model.quantize.embed_code(codes[idx])) - x_all[idx], weight[idx])
        return loss, lambda: f'weighted L1+L2 {loss.item():.4f}'

    return _train_part(vae, params, loss_fn, len(images), steps, batch_size, lr, seed, 'decoder', path)


# ----------------------------------------------------------------------------- tokenizer
def train_tokenizer(samples: Sequence[S.Sample], path: str = TOKENIZER_PATH):

    data = train_bpe(S.all_texts(samples), vocab_size=PLAIN_TEXT_VOCAB, path=path)
    if data.vocab_size > PLAIN_TEXT_VOCAB:
        raise RuntimeError(f'tokenizer has {data.vocab_size} ids, the model has room for {PLAIN_TEXT_VOCAB}')
    _log(f'tokenizer: {data.vocab_size} ids -> {path}')
    return get_tokenizer(path)


# ----------------------------------------------------------------------------- RuDOLPH rows
def rudolph_rows(samples: Sequence[S.Sample], images: torch.Tensor, seed: int = 0, t2i_per_image: int = 2,
                 i2t_per_image: int = 2) -> List[Dict]:
    """Fine-tuning rows: ``t2i_per_image`` ``t2i`` and ``i2t_per_image`` ``i2t`` rows per picture."""

    rng = np.random.default_rng(seed)
    rows = []
    for s, img in zip(samples, images):
        caps = S.captions(s)
        for k in rng.choice(len(caps), size=t2i_per_image, replace=False):
            rows.append({'task': 't2i', 'left_text': caps[k], 'image': img})
        rights = caps + S.attribute_texts(s) + [VQA_TEMPLATE.format(question=q) + ' ' + a
                                                for q, a in S.question_answers(s)]
        # VQA colour / shape and the zero-shot statements are what the evaluation asks: weight them up.
        weights = np.array([1.0] * len(caps) + [1.5, 1.5] + [2.0, 1.5, 1.0])
        for k in rng.choice(len(rights), size=i2t_per_image, replace=False, p=weights / weights.sum()):
            rows.append({'task': 'i2t', 'right_text': rights[k], 'image': img})
    return rows


def structured_image_init(model, patterns: np.ndarray, seed: int = 0, std: float = 0.02) -> None:
    """Initialise RuDOLPH's image embeddings (and image output rows) from what the codes stand for.

    Each code starts as a random projection of its :func:`code_features` (colour, shape,
    coverage pattern, background), so codes sharing a colour or a shape start close: the
    model reads both from any shape patch from the first step and learns from far fewer
    samples than from 2048 unrelated rows.
    """
    g = torch.Generator().manual_seed(seed)
    feats = code_features(patterns)
    # colour / shape / background one-hots weigh as much as the whole 64-value coverage pattern
    feats[:, 64:] *= 4
    table = feats @ torch.randn(feats.shape[1], model.image_embeddings.weight.shape[1], generator=g)
    table = table / table.std() * std
    V = model.get_param('vocab_size')
    with torch.no_grad():
        model.image_embeddings.weight.copy_(table)
        model.to_logits[1].weight[V:V + table.shape[0]].copy_(table)


class CodeTable:
    """A stand-in for the VAE in ``prepare_dataset``: the target codes of known pictures (looked up by content)."""

    downsample_factor = 8

    def __init__(self, images: torch.Tensor, codes: torch.Tensor):
        self.table = {self._key(img): c for img, c in zip(images, codes.view(len(images), -1))}

    @staticmethod
    def _key(img: torch.Tensor) -> bytes:
        return img.mul(255).round().to(torch.uint8).numpy().tobytes()

    def get_codebook_indices(self, images: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.table[self._key(img)] for img in images])


def train_rudolph(samples: Sequence[S.Sample], tokenizer, vae, epochs: int = 2, batch_size: int = 32,
                  lr: float = 2e-3, seed: int = 0, path: Optional[str] = RUDOLPH_PATH,
                  max_steps: Optional[int] = None, show_progress: bool = True, work_dir: Optional[str] = None,
                  save_every: Optional[int] = None, model=None, t2i_rows: int = 2, i2t_rows: int = 2):

    t0 = time.time()
    images = images_tensor(samples)
    rows = rudolph_rows(samples, images, seed=seed, t2i_per_image=t2i_rows, i2t_per_image=i2t_rows)
    torch.manual_seed(seed)
    if model is None:
        model = ruDolphModel(device='cpu', **MODEL_PARAMS)
    data = prepare_dataset(rows, tokenizer, vae, model, spc_tokens=TINY_SPC_TOKENS, vae_batch_size=256,
                           show_progress=False)
    _log(f'rudolph: {len(data)} rows encoded ({time.time() - t0:.0f}s); '
         f'{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters')
    out = work_dir or tempfile.mkdtemp(prefix='tiny-shapes-train-')
    try:
        config = TrainConfig(out_dir=out, epochs=epochs, max_steps=max_steps, batch_size=batch_size, lr=lr,
                             warmup=0.03, schedule='cosine', clip=1.0, seed=seed, cpu=True,
                             show_progress=show_progress, save_final=False, log_every=50, first_image_token=True,
                             weight_decay=0.01, save_every=save_every, keep_last=1)

        def callback(state, entry):
            if state.step % 100 == 0 or state.step == state.total_steps:
                parts = ', '.join(f'{k}={entry[k]:.3f}' for k in ('image_loss', 'r_text_loss') if entry.get(k))
                _log(f'rudolph step {state.step}/{state.total_steps}: loss {entry["loss"]:.3f} {parts} '
                     f'({time.time() - t0:.0f}s)')

        result = train(model, data, config, step_callback=callback)
    finally:
        if work_dir is None:
            shutil.rmtree(out, ignore_errors=True)
    model = result.model.eval()
    if path is not None:
        state = {k: v.detach().to(torch.float16) if v.is_floating_point() else v
                 for k, v in model.state_dict().items() if not k.startswith('transformer.') or 'mask' not in k}
        save_weights(state, path)
    return model


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m rudolph.demo.train', description=__doc__.split('\n')[0])
    parser.add_argument('--out', default=os.path.dirname(RUDOLPH_PATH),
                        help='the model folder: three weight files, config.json and the model card')
    parser.add_argument('--pictures', type=int, default=6000, help='training pictures')
    parser.add_argument('--encoder-steps', type=int, default=1000, help='VQGAN encoder steps (batch 32)')
    parser.add_argument('--decoder-steps', type=int, default=1400, help='VQGAN decoder steps (batch 16)')
    parser.add_argument('--rudolph-stages', default='3000:2e-3',
                        help='RuDOLPH training stages STEPS:LR,... (batch 32, cosine schedule each)')
    parser.add_argument('--t2i-rows', type=int, default=2, help='text-to-image rows per picture (caption phrasings)')
    parser.add_argument('--i2t-rows', type=int, default=2, help='image-to-text rows per picture')
    parser.add_argument('--init-rudolph', default=None, help='start RuDOLPH from these weights instead of random')
    parser.add_argument('--first-stage', type=int, default=0, help='index of the first stage run (with --init-rudolph)')
    parser.add_argument('--work-dir', default=None, help='keep RuDOLPH training checkpoints here (resumable)')
    parser.add_argument('--save-every', type=int, default=None)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--skip', nargs='*', default=[], choices=['tokenizer', 'encoder', 'decoder', 'rudolph'],
                        help='reuse these parts from the existing files (encoder/decoder: that half of the VQGAN '
                             'file; a part not skipped is trained from the initial weights of a full run)')
    parser.add_argument('--quiet', action='store_true')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    os.makedirs(args.out, exist_ok=True)
    paths = {k: os.path.join(args.out, os.path.basename(p)) for k, p in
             (('tokenizer', TOKENIZER_PATH), ('vqgan', VQGAN_PATH), ('rudolph', RUDOLPH_PATH))}
    samples = S.make_samples(args.pictures, seed=TRAIN_SEED)
    _log(f'{len(samples)} training pictures rendered ({time.time() - t0:.0f}s)')

    tokenizer = get_tokenizer(paths['tokenizer']) if 'tokenizer' in args.skip else \
        train_tokenizer(samples, paths['tokenizer'])
    images = images_tensor(samples)
    # The codes describe the canonical picture (named size and position, no jitter): the encoder
    # maps every jittered variant to them and the decoder draws the canonical picture, so a
    # caption fixes the whole code grid and text-to-image has nothing left to guess.
    canonical = images_tensor(samples, canonical=True)
    alpha = coverage(samples, canonical)
    patterns = fit_shape_patterns(samples, alpha, seed=args.seed)
    codes = target_codes(samples, alpha, patterns)
    _log(f'target codes of {len(samples)} pictures: {int(codes.unique().numel())} distinct ({time.time() - t0:.0f}s)')
    # The parts not skipped start from the same initial weights as in a full run, so retraining
    # one part (say --skip tokenizer encoder rudolph) gives what the full run would.
    vae = new_vqgan(patterns, seed=args.seed)
    for part, prefixes in (('encoder', ENCODER_PARTS), ('decoder', DECODER_PARTS)):
        if part in args.skip:
            reuse_parts(vae, paths['vqgan'], prefixes)
    if 'encoder' not in args.skip:
        vae = train_encoder(vae, images, codes, steps=args.encoder_steps, seed=args.seed, path=paths['vqgan'])
    if 'decoder' not in args.skip:
        vae = train_decoder(vae, canonical, codes, alpha, steps=args.decoder_steps, seed=args.seed + 1,
                            path=paths['vqgan'])
    if 'rudolph' not in args.skip:
        # RuDOLPH learns on the target codes (what the encoder is trained to output and the decoder
        # to draw), so it does not depend on how far the VQGAN got.
        if not args.init_rudolph:
            torch.manual_seed(args.seed)
            model = ruDolphModel(device='cpu', **MODEL_PARAMS)
            structured_image_init(model, patterns, seed=args.seed)
        else:
            model = get_rudolph_model('tiny-shapes', checkpoint_path=args.init_rudolph).float()
        table = CodeTable(images, codes)
        for k, stage in enumerate(args.rudolph_stages.split(','), start=args.first_stage):
            steps, lr = stage.split(':')
            # each stage: a fresh optimizer and cosine schedule, other batches (seed + k)
            model = train_rudolph(samples, tokenizer, table, max_steps=int(steps), lr=float(lr), seed=args.seed + k,
                                  path=paths['rudolph'], show_progress=not args.quiet, work_dir=args.work_dir,
                                  save_every=args.save_every, model=model, t2i_rows=args.t2i_rows,
                                  i2t_rows=args.i2t_rows)
    describe_folder(args.out, args.pictures, args.rudolph_stages, args.seed)
    sizes = ', '.join(f'{os.path.basename(p)} {os.path.getsize(p) / 1e6:.2f} MB' for p in paths.values()
                      if os.path.exists(p))
    _log(f'done in {(time.time() - t0) / 60:.1f} min: {sizes}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
