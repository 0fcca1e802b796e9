"""TEMP reference of the batched task contract (the lead replaces it at merge with the real engine).

Each function loops over its inputs and runs the single-input task of :mod:`rudolph.tasks`
with the row's own seed, so result ``i`` depends only on ``(seed, keys[i], inputs[i], settings)``.
"""
import hashlib
from typing import Any, Dict, List

import torch

from . import tasks
from .codec import PAD_ID
from .errors import ConfigError

__all__ = ['row_seed', 'caption_batch', 'vqa_batch', 'classify_batch', 'embed_image_batch', 'embed_text_batch',
           'text2image_batch']

#: text-to-image sampling when none is given
_T2I_SAMPLING = tasks.SamplingConfig(768, 0.99, 1.0)


def row_seed(seed: int, key: str) -> int:
    """The seed of one input: a stable hash of ``(seed, key)`` (independent of batch and process)."""
    digest = hashlib.sha256(f'{int(seed)}\x00{key}'.encode('utf-8')).digest()
    return int.from_bytes(digest[:4], 'little') & 0x7FFFFFFF


def _seeded(seed: int, key: str) -> int:
    s = row_seed(seed, key)
    torch.manual_seed(s)
    return s


def caption_batch(parts, images, keys, *, seed=0, captions_num=1, template='', sampling=None,
                  generations_num=None) -> List[Dict[str, Any]]:
    """``{'captions', 'scores'}`` of each image (best first; lower score is better)."""
    sampling = sampling or tasks.text_sampling_for(parts.reference, 'captions')
    out = []
    for img, key in zip(images, keys):
        rows = tasks.captioning(parts, img, captions_num, generations_num or max(8, captions_num), sampling,
                                seed=_seeded(seed, key), r_template=template)
        out.append({'captions': [r['text'] for r in rows], 'scores': [float(r['score']) for r in rows]})
    return out


def vqa_batch(parts, images, questions, keys, *, seed=0, answers_num=1, sampling=None) -> List[Dict[str, Any]]:
    """``{'answers', 'scores'}`` of each (image, question); score = share of the sampled answers."""
    sampling = sampling or tasks.text_sampling_for(parts.reference, 'captions')
    generations = max(8, answers_num)
    out = []
    for img, question, key in zip(images, questions, keys):
        rows = tasks.vqa(parts, img, question, answers_num, generations, sampling, seed=_seeded(seed, key))
        out.append({'answers': [r['answer'] for r in rows], 'scores': [r['count'] / generations for r in rows]})
    return out


def classify_batch(parts, images, classes, *, template=None) -> List[Dict[str, Any]]:
    """``{'label', 'probs', 'ties'}`` of each image (probs: softmax of minus each class's cross-entropy)."""
    out = []
    for img in images:
        pred = tasks.zero_shot(parts, img, classes, template, bs=len(classes))
        probs = (-pred['ppl'].log()).softmax(0).tolist()
        out.append({'label': pred['class'], 'probs': dict(zip(classes, probs)), 'ties': pred['ties']})
    return out


def embed_image_batch(parts, images, *, layer=-1, pooling='mean') -> torch.Tensor:
    """``[B, hidden]`` float32 pooled hidden states of each picture's image positions."""
    return torch.cat([tasks.image_embedding(parts, [img], layer, pooling) for img in images])


@torch.no_grad()
def embed_text_batch(parts, texts, *, layer=-1, pooling='mean') -> torch.Tensor:
    """``[B, hidden]`` float32 pooled hidden states of each text's non-pad positions (alone in the left text)."""
    if pooling not in ('mean', 'max'):
        raise ConfigError(f"pooling must be 'mean' or 'max', got {pooling!r}")
    rows = []
    for text in texts:
        ids = parts.text(text, parts.layout.L, '<LT_T2T>')[None]
        out = parts.model(ids, return_hidden_states=True)
        hidden = out[-1] if isinstance(out, tuple) else out.hidden_states
        states = hidden[layer][0][ids[0] != PAD_ID].float()
        rows.append(states.mean(0) if pooling == 'mean' else states.amax(0))
    return torch.stack(rows)


def text2image_batch(parts, prompts, keys, *, seed=0, images_num=1, sampling=None, rerank=True,
                     codebooks_num=None) -> List[Dict[str, Any]]:
    """``{'codebooks': [images_num, N*N], 'scores'}`` of each prompt (reranked: best first)."""
    sampling = sampling or _T2I_SAMPLING
    out = []
    for prompt, key in zip(prompts, keys):
        s = _seeded(seed, key)
        if rerank:
            codes, rows = tasks.best_images(parts, prompt, codebooks_num or 2 * images_num, images_num, sampling,
                                            seed=s)
            scores = [float(r.get('score', r['ppl_text'])) for r in rows]
        else:
            codes = tasks.text_to_image(parts, prompt, images_num, sampling, seed=s)
            scores = [0.0] * images_num
        out.append({'codebooks': codes.cpu(), 'scores': scores})
    return out
