"""Rebuild the three tiny-shapes weight files from scratch: ``python -m rudolph.demo.train``.

1. **Tokenizer**: :func:`rudolph.tokenizer.train_bpe` on every caption / question / answer
   of the training pictures, written in YouTokenToMe's file format.
2. **VQGAN** (:class:`rudolph.vae.VQGanGumbelVAE`, 64 px -> 8x8 codes of 1024): trained with
   a *supervised codebook*, which converges in minutes on a CPU where end-to-end Gumbel
   training would take hours. Each 8x8 patch gets a target code: one of 3 background codes
   when it holds no shape pixel, else ``(shape colour, edge pattern)`` where the edge
   pattern is the nearest of 170 k-means prototypes of the patch's coverage mask (pattern 0
   = fully covered). The encoder (+ ``quant_conv`` + ``quantize.proj``) learns these codes
   by cross-entropy on its codebook logits (so ``get_codebook_indices``' argmax returns them);
   the decoder and the codebook ``quantize.embed`` learn to redraw the picture from the
   target codes (L1 + L2, shape pixels weighted up): ``--vae-steps`` joint steps, then
   ``--decoder-steps`` decoder-only steps. The weights are a plain ruDALL-E-format checkpoint (fp16).
3. **RuDOLPH** (``MODEL_PARAMS``): trained with :mod:`rudolph.finetune` (``prepare_dataset`` +
   ``train``) on rows of two tasks: ``t2i`` (caption left -> image codes) and ``i2t`` (image ->
   caption / ``вопрос: ... ответ: ...`` / ``цвет фигуры: ...`` right text; empty left text, as the
   API uses for captioning and VQA), over the VQGAN's target codes (:class:`CodeTable`), in
   ``--rudolph-stages`` (fresh optimizer and cosine schedule each). Its image embeddings start
   from the code structure (:func:`structured_image_init`).

Shipped weights: ``python -m rudolph.demo.train`` with the defaults (the phases were run as
separate invocations with ``--skip``; same seeds and steps).

Seeds are fixed; the run is deterministic on a given machine. One intra-op thread: on a
shared 2-core machine, several OpenMP threads make the small convolutions ~10x slower.
"""
import argparse
import os
import shutil
import tempfile
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import MODEL_PARAMS, PLAIN_TEXT_VOCAB, RUDOLPH_PATH, TINY_SPC_TOKENS, TOKENIZER_PATH, VQGAN_CONFIG, VQGAN_PATH
from . import shapes as S

TRAIN_SEED = 0  # the dataset seed of training pictures (evaluation uses EVAL_SEED, see evaluate.py)
N_PATTERNS = 170
N_BG = len(S.BACKGROUNDS)


def _log(msg: str) -> None:
    print(f'[{time.strftime("%H:%M:%S")}] {msg}', flush=True)


# ----------------------------------------------------------------------------- data
def images_tensor(samples: Sequence[S.Sample]) -> torch.Tensor:
    """``[n, 3, 64, 64]`` float in ``[0, 1]``."""
    arr = np.stack([np.asarray(s.image, dtype=np.uint8) for s in samples])
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


def target_codes(samples: Sequence[S.Sample], alpha: np.ndarray, patterns: np.ndarray) -> torch.Tensor:
    """Target VQGAN codes ``[n, 64]`` (see the module docstring)."""
    p = patches(alpha).astype(np.float32)  # [n, 64, 64]
    n = p.shape[0]
    flat = p.reshape(-1, 64)
    d = (flat ** 2).sum(1)[:, None] - 2 * flat @ patterns.T + (patterns ** 2).sum(1)[None]
    pattern = d.argmin(1).reshape(n, 64)
    colour = np.array([list(S.COLOURS).index(s.colour) for s in samples])[:, None]
    bg = np.array([list(S.BACKGROUNDS).index(s.background) for s in samples])[:, None]
    codes = N_BG + colour * N_PATTERNS + pattern
    empty = p.mean(-1) <= 0.02
    codes = np.where(empty, np.broadcast_to(bg, codes.shape), codes)
    return torch.from_numpy(codes.astype(np.int64))


# ----------------------------------------------------------------------------- VQGAN
def _reconstruction_weight(alpha: np.ndarray) -> torch.Tensor:
    """Shape pixels (and a ring around them) weigh more than the plain background in the reconstruction loss."""
    cover = torch.from_numpy(alpha).unsqueeze(1)
    return 1 + 4 * F.max_pool2d(cover, 3, stride=1, padding=1)


def _weighted_l1_l2(err: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return ((err.abs() + err ** 2) * weight).mean() / weight.mean()


def _finish_vqgan(vae, model, path: Optional[str]):
    """Back to eval/contiguous; save fp16 weights to ``path`` and reload them (what ships is the rounded copy)."""
    vae.eval()
    model.to(memory_format=torch.contiguous_format)
    if path is not None:
        state = {k: v.detach().to(torch.float16) if v.is_floating_point() else v
                 for k, v in model.state_dict().items()}
        os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
        torch.save({'state_dict': state}, path)
        vae.load_checkpoint(path)
    return vae


def train_vqgan(samples: Sequence[S.Sample], codes: torch.Tensor, alpha: np.ndarray, steps: int = 700,
                batch_size: int = 12, lr: float = 2e-3, seed: int = 0, path: Optional[str] = VQGAN_PATH):
    from ..vae import VQGanGumbelVAE

    t0 = time.time()
    images = images_tensor(samples)
    codes = codes.view(-1, 8, 8)
    weight = _reconstruction_weight(alpha)
    torch.manual_seed(seed)
    vae = VQGanGumbelVAE(config=VQGAN_CONFIG)
    model = vae.model.to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    gen = torch.Generator().manual_seed(seed)
    x_all = images.mul(2).sub(1).contiguous(memory_format=torch.channels_last)
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(samples), (batch_size,), generator=gen)
        x, c, w = x_all[idx], codes[idx], weight[idx]
        logits = model.encode_to_logits(x)
        enc_loss = F.cross_entropy(logits, c)
        rec_loss = _weighted_l1_l2(model.decode(model.quantize.embed_code(c)) - x, w)
        loss = enc_loss + 4 * rec_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0 or step == steps:
            acc = (logits.argmax(1) == c).float().mean().item()
            _log(f'vqgan step {step}/{steps}: code CE {enc_loss.item():.3f} (acc {acc:.3f}), '
                 f'weighted L1+L2 {rec_loss.item():.4f} ({time.time() - t0:.0f}s)')
    return _finish_vqgan(vae, model, path)


def train_decoder(vae, samples: Sequence[S.Sample], codes: torch.Tensor, alpha: np.ndarray, steps: int = 500,
                  batch_size: int = 12, lr: float = 1.5e-3, seed: int = 1, path: Optional[str] = VQGAN_PATH):
    """Second VQGAN phase: the decoder and codebook alone (the encoder is done), which is cheaper per step."""
    t0 = time.time()
    images = images_tensor(samples)
    codes = codes.view(-1, 8, 8)
    weight = _reconstruction_weight(alpha)
    model = vae.model.to(memory_format=torch.channels_last).train()
    params = [p for n, p in model.named_parameters() if n.startswith(('decoder.', 'post_quant_conv.', 'quantize.embed.'))]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.02)
    gen = torch.Generator().manual_seed(seed)
    x_all = images.mul(2).sub(1).contiguous(memory_format=torch.channels_last)
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(samples), (batch_size,), generator=gen)
        x, c, w = x_all[idx], codes[idx], weight[idx]
        rec_loss = _weighted_l1_l2(model.decode(model.quantize.embed_code(c)) - x, w)
        opt.zero_grad(set_to_none=True)
        rec_loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0 or step == steps:
            _log(f'vqgan decoder step {step}/{steps}: weighted L1+L2 {rec_loss.item():.4f} ({time.time() - t0:.0f}s)')
    return _finish_vqgan(vae, model, path)


# ----------------------------------------------------------------------------- tokenizer
def train_tokenizer(samples: Sequence[S.Sample], path: str = TOKENIZER_PATH):
    from ..tokenizer import get_tokenizer, train_bpe

    data = train_bpe(S.all_texts(samples), vocab_size=PLAIN_TEXT_VOCAB, path=path)
    if data.vocab_size > PLAIN_TEXT_VOCAB:
        raise RuntimeError(f'tokenizer has {data.vocab_size} ids, the model has room for {PLAIN_TEXT_VOCAB}')
    _log(f'tokenizer: {data.vocab_size} ids -> {path}')
    return get_tokenizer(path)


# ----------------------------------------------------------------------------- RuDOLPH rows
def rudolph_rows(samples: Sequence[S.Sample], images: torch.Tensor, seed: int = 0,
                 i2t_per_image: int = 2) -> List[Dict]:
    """Fine-tuning rows: one ``t2i`` and ``i2t_per_image`` ``i2t`` rows per picture."""
    from ..api import VQA_TEMPLATE

    rng = np.random.default_rng(seed)
    rows = []
    for s, img in zip(samples, images):
        caps = S.captions(s)
        rows.append({'task': 't2i', 'left_text': caps[rng.integers(len(caps))], 'image': img})
        rights = caps + S.attribute_texts(s) + [VQA_TEMPLATE.format(question=q) + ' ' + a
                                                for q, a in S.question_answers(s)]
        # VQA colour / shape and the zero-shot statements are what the evaluation asks: weight them up.
        weights = np.array([1.0] * len(caps) + [1.5, 1.5] + [2.0, 1.5, 1.0])
        for k in rng.choice(len(rights), size=i2t_per_image, replace=False, p=weights / weights.sum()):
            rows.append({'task': 'i2t', 'right_text': rights[k], 'image': img})
    return rows


def structured_image_init(model, patterns: np.ndarray, seed: int = 0, std: float = 0.02) -> None:
    """Initialise RuDOLPH's image embeddings (and image output rows) from the code structure.

    Code ``3 + colour * K + pattern`` starts as ``colour vector + projection of the pattern's
    coverage mask``, so that one edge pattern in six colours, and similar patterns, start
    close: the model then learns shapes from far fewer samples than from 1024 unrelated rows.
    """
    g = torch.Generator().manual_seed(seed)
    h = model.image_embeddings.weight.shape[1]
    n_colours = len(S.COLOURS)
    proj = torch.randn(64, h, generator=g) / 8
    protos = torch.from_numpy(patterns).float() - 0.5
    colour = torch.randn(n_colours, h, generator=g)
    bg = torch.randn(N_BG, h, generator=g)
    table = torch.zeros(model.image_embeddings.weight.shape)
    table[:N_BG] = bg - 0.5 * torch.ones(64) @ proj
    n = n_colours * len(patterns)
    codes = torch.arange(n)
    table[N_BG:N_BG + n] = colour[codes // len(patterns)] + protos[codes % len(patterns)] @ proj
    table = table / table[:N_BG + n].std() * std
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
                  save_every: Optional[int] = None, model=None):
    from ..finetune import TrainConfig, prepare_dataset, train
    from ..model import ruDolphModel

    t0 = time.time()
    images = images_tensor(samples)
    rows = rudolph_rows(samples, images, seed=seed)
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
                             show_progress=show_progress, save_final=False, log_every=50,
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
        torch.save(state, path)
    return model


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m rudolph.demo.train', description=__doc__.split('\n')[0])
    parser.add_argument('--out', default=os.path.dirname(RUDOLPH_PATH), help='folder for the three weight files')
    parser.add_argument('--pictures', type=int, default=6000, help='training pictures')
    parser.add_argument('--vae-steps', type=int, default=300, help='VQGAN joint encoder+decoder steps')
    parser.add_argument('--decoder-steps', type=int, default=500, help='VQGAN decoder-only steps after them')
    parser.add_argument('--rudolph-stages', default='450:2e-3,300:1e-3',
                        help='RuDOLPH training stages STEPS:LR,... (batch 32, cosine schedule each)')
    parser.add_argument('--init-rudolph', default=None, help='start RuDOLPH from these weights instead of random')
    parser.add_argument('--first-stage', type=int, default=0, help='index of the first stage run (with --init-rudolph)')
    parser.add_argument('--work-dir', default=None, help='keep RuDOLPH training checkpoints here (resumable)')
    parser.add_argument('--save-every', type=int, default=None)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--skip', nargs='*', default=[], choices=['tokenizer', 'vqgan', 'vqgan-joint', 'rudolph'],
                        help='reuse the existing file of these parts')
    parser.add_argument('--quiet', action='store_true')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    os.makedirs(args.out, exist_ok=True)
    paths = {k: os.path.join(args.out, os.path.basename(p)) for k, p in
             (('tokenizer', TOKENIZER_PATH), ('vqgan', VQGAN_PATH), ('rudolph', RUDOLPH_PATH))}
    samples = S.make_samples(args.pictures, seed=TRAIN_SEED)
    _log(f'{len(samples)} training pictures rendered ({time.time() - t0:.0f}s)')
    from ..tokenizer import get_tokenizer

    tokenizer = get_tokenizer(paths['tokenizer']) if 'tokenizer' in args.skip else \
        train_tokenizer(samples, paths['tokenizer'])
    images = images_tensor(samples)
    alpha = coverage(samples, images)
    patterns = fit_patterns(alpha, seed=args.seed)
    codes = target_codes(samples, alpha, patterns)
    _log(f'target codes of {len(samples)} pictures: {int(codes.unique().numel())} distinct ({time.time() - t0:.0f}s)')
    if 'vqgan' not in args.skip:
        if 'vqgan-joint' in args.skip:  # continue from the saved joint phase
            from ..vae import get_vae
            vae = get_vae(path=paths['vqgan'], config=VQGAN_CONFIG)
        else:
            vae = train_vqgan(samples, codes, alpha, steps=args.vae_steps, seed=args.seed, path=paths['vqgan'])
        train_decoder(vae, samples, codes, alpha, steps=args.decoder_steps, seed=args.seed + 1, path=paths['vqgan'])
    if 'rudolph' not in args.skip:
        # RuDOLPH learns on the VQGAN's target codes (what its encoder is trained to output and its
        # decoder to draw), so it does not wait for the VQGAN.
        model = None
        if not args.init_rudolph:
            from ..model import ruDolphModel
            torch.manual_seed(args.seed)
            model = ruDolphModel(device='cpu', **MODEL_PARAMS)
            structured_image_init(model, patterns, seed=args.seed)
        else:
            from ..model import get_rudolph_model
            model = get_rudolph_model('tiny-shapes', checkpoint_path=args.init_rudolph).float()
        table = CodeTable(images, codes)
        for k, stage in enumerate(args.rudolph_stages.split(','), start=args.first_stage):
            steps, lr = stage.split(':')
            # each stage: a fresh optimizer and cosine schedule, other batches (seed + k)
            model = train_rudolph(samples, tokenizer, table, max_steps=int(steps), lr=float(lr), seed=args.seed + k,
                                  path=paths['rudolph'], show_progress=not args.quiet, work_dir=args.work_dir,
                                  save_every=args.save_every, model=model)
    sizes = ', '.join(f'{os.path.basename(p)} {os.path.getsize(p) / 1e6:.2f} MB' for p in paths.values()
                      if os.path.exists(p))
    _log(f'done in {(time.time() - t0) / 60:.1f} min: {sizes}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
