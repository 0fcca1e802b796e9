"""End-to-end task timings of the 350M config (random weights) through the public pipelines.

Measures what a user waits for: one full 256-token image at bs=1, a batch of images at bs=8
and bs=32 (tokens/s), and zero-shot classification of one image over 10 classes. Uses a
small BPE model trained on the spot (our own trainer) and a random full-size VQGAN, so no
download is needed; the model cost does not depend on the weights' values.

Usage: python bench/tasks.py [--model 350M] [--threads 2] [--skip-bs32]
"""
import argparse
import time

import numpy as np
import torch
from PIL import Image

from rudolph import pipelines
from rudolph.model import get_rudolph_model
from rudolph.tokenizer import get_tokenizer, train_bpe
from rudolph.vae import get_vae

CLASSES = ['кошка', 'собака', 'лошадь', 'автомобиль', 'самолёт', 'корабль', 'птица', 'олень', 'лягушка', 'грузовик']


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', default='350M')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--skip-bs32', action='store_true')
    parser.add_argument('--tmp', default='/tmp/rudolph-bench')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import os
    os.makedirs(args.tmp, exist_ok=True)
    bpe_path = os.path.join(args.tmp, 'bench-bpe.model')
    texts = ['рисунок кота на диване', 'красивый пейзаж с озером', 'на картинке'] + CLASSES
    train_bpe(texts * 20, 400, bpe_path)
    tokenizer = get_tokenizer(bpe_path)
    model = get_rudolph_model(args.model, pretrained=False)
    vae = get_vae(pretrained=False)
    N = model.image_tokens_per_dim
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (N * 8, N * 8, 3), dtype=np.uint8))

    rows = []
    seconds, _ = timed(lambda: pipelines.generate_codebooks('рисунок кота', tokenizer, model, top_k=768, top_p=0.99,
                                                            images_num=1, bs=1, seed=0, progress=False))
    rows.append(('one image (256 tokens), bs=1', seconds, 256 / seconds))
    for bs in ([8] if args.skip_bs32 else [8, 32]):
        seconds, _ = timed(lambda: pipelines.generate_codebooks('рисунок кота', tokenizer, model, top_k=768,
                                                                top_p=0.99, images_num=bs, bs=bs, seed=0,
                                                                progress=False))
        rows.append((f'{bs} images, bs={bs}', seconds, bs * 256 / seconds))
    seconds, result = timed(lambda: pipelines.zs_clf(image, CLASSES, model, tokenizer, vae, bs=10,
                                                     template='на картинке {}', progress=False))
    rows.append(('zero-shot classification, 10 classes', seconds, None))
    seconds, _ = timed(lambda: pipelines.self_reranking_by_text('рисунок кота', torch.randint(0, 8192, (8, N * N)),
                                                                tokenizer, model, bs=8, progress=False))
    rows.append(('self-reranking by text, 8 codebooks', seconds, None))

    print(f'\n## {args.model} tasks on CPU (float32, {args.threads} threads)\n')
    print('| task | seconds | image tokens/s |')
    print('|---|---|---|')
    for name, seconds, rate in rows:
        print(f"| {name} | {seconds:.2f} | {'' if rate is None else f'{rate:.1f}'} |")


if __name__ == '__main__':
    main()
