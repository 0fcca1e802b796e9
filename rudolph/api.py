"""``ruDolphApi``: the task-token API of RuDOLPH v2 / 2.7B (original ``rudolph.api``), on the shared engine.

Texts carry a task token right after bos (``[2, <LT_T2I>] + bpe + [3]``). Reranking
scores are ``(ppl - min) / (quantile_q(ppl) - min)`` mixed with ``ppl_txt_w``.
"""
from copy import deepcopy
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from rudolph import pipelines
from rudolph.checks import check_count, check_fraction, check_template, warn_ignored_seed
from rudolph.errors import ConfigError
from rudolph.generation.engine import ce_to_ppl
from rudolph.generation.sampling import check_sampling_args
from rudolph.model.config import Layout
from rudolph.model.configs import DEFAULT_SPC_TOKENS
from rudolph.model.utils import get_attention_mask
from rudolph.superres import cached_realesrgan
from rudolph.tasks import core as tasks
from rudolph.tasks.core import DEFAULT_IMAGE_SAMPLING, VQA_TEMPLATE, Parts, SamplingConfig
from rudolph.tasks.sequences import encode_text, model_device, require_vae, task_token, tokenizer_vocab_limit
from rudolph.utils import seed_everything

__all__ = ['ruDolphApi', 'DEFAULT_SPC_TOKENS', 'VQA_TEMPLATE']

class ruDolphApi:  # noqa: N801 (original name)
    """Generation, captioning, reranking and zero-shot classification with task tokens.

    ``bs`` and the ``txt_*`` / ``img_*`` sampling defaults apply when a method gets ``None``;
    ``q`` is the quantile that normalises perplexities in reranking scores; ``quite=True``
    (sic, original name) hides progress bars. ``vae`` may be ``None`` for text-only use; the
    tasks that encode or decode pictures then raise a ``ConfigError``.
    """

    def __init__(self, model, tokenizer, vae, spc_tokens: Optional[Mapping[str, int]] = None, quite: bool = False, *,
                 bs: int = 24, q: float = 0.5, txt_top_k: int = 64, img_top_k: int = DEFAULT_IMAGE_SAMPLING.top_k,
                 txt_top_p: float = 0.8, img_top_p: float = DEFAULT_IMAGE_SAMPLING.top_p, txt_temperature: float = 0.9,
                 img_temperature: float = DEFAULT_IMAGE_SAMPLING.temperature):
        check_fraction('q', q, 'a quantile in [0, 1]')
        check_count('bs', bs)
        check_sampling_args(txt_top_k, txt_top_p, txt_temperature)
        check_sampling_args(img_top_k, img_top_p, img_temperature)
        if spc_tokens is None:  # the task tokens the model was loaded with, else the published ones
            spc_tokens = getattr(model, 'spc_tokens', None) or DEFAULT_SPC_TOKENS
        self.spc_tokens = deepcopy(dict(spc_tokens))
        self.model, self.tokenizer, self.vae = model, tokenizer, vae
        self.layout = Layout.from_model(model)
        self.text_limit = tokenizer_vocab_limit(tokenizer, self.layout)  # sampled ids >= it become eos
        self.parts = Parts(model, tokenizer, vae, self.spc_tokens if model.get_param('text_special_tokens') else {},
                           progress=not quite).check()
        self.vocab_size = self.layout.V
        self.l_text_seq_length, self.r_text_seq_length = self.layout.L, self.layout.R
        self.image_seq_length, self.image_tokens_per_dim = self.layout.N2, self.layout.N
        self.total_seq_length = self.layout.S
        self.text_special_tokens = model.get_param('text_special_tokens')
        self.image_special_tokens = model.get_param('image_special_tokens')
        self.text_vocab_size = self.layout.plain_text_vocab
        self.image_size = self.layout.N * 8
        self.device = model_device(model)
        self.bs, self.q, self.quite = bs, q, quite
        self.txt_top_k, self.txt_top_p, self.txt_temperature = txt_top_k, txt_top_p, txt_temperature
        self.img_top_k, self.img_top_p, self.img_temperature = img_top_k, img_top_p, img_temperature

    def encode_text(self, text: str, text_seq_length: int, special_token: Optional[str] = None) -> torch.Tensor:
        """``[2, <special>] + bpe(text) + [3]`` padded/cut to ``text_seq_length`` (no special on v1 models)."""
        special = task_token(self.parts.spc_tokens, special_token)
        return encode_text(self.tokenizer, text, text_seq_length, 'text', special)

    def decode_text(self, encoded: torch.Tensor) -> str:
        """Text of ids, dropping pad/unk/bos/eos and the task tokens."""
        return Parts(self.model, self.tokenizer, self.vae, self.spc_tokens).decode(encoded)

    def _sampling(self, bs, top_k, top_p, temperature, kind: str) -> Tuple[int, SamplingConfig]:
        """``bs`` and the sampling of a call, the instance defaults filling what is ``None``."""
        pre = 'img' if kind == 'img' else 'txt'
        return self.bs if bs is None else bs, SamplingConfig(*(getattr(self, f'{pre}_{k}') if v is None else v
                                    for k, v in (('top_k', top_k), ('top_p', top_p), ('temperature', temperature))))

    @staticmethod
    def ce_to_ppl(ce: torch.Tensor) -> torch.Tensor:
        return ce_to_ppl(ce)

    @staticmethod
    def seed_everything(seed: Optional[int]) -> None:
        """Kept for compatibility: seeds the global RNGs (the API itself uses private generators)."""
        if seed is not None:
            seed_everything(seed)

    def get_attention_mask(self, bs: int) -> torch.Tensor:
        """The causal ``[bs, 1, S, S]`` float mask on the model's device (what the original passed to the model)."""
        return get_attention_mask(bs, self.l_text_seq_length, self.image_tokens_per_dim, self.r_text_seq_length,
                                  self.device)

    @staticmethod
    def show(pil_images, nrow: int = 4, size: int = 11, save_dir: Optional[str] = None, show: bool = True) -> None:
        pipelines.show(pil_images, nrow=nrow, size=size, save_dir=save_dir, show=show)

    # ------------------------------------------------------------------ images
    def generate_codebooks(self, text: str, images_num: int, image_prompts=None, top_k: Optional[int] = None,
                           top_p: Optional[float] = None, temperature: Optional[float] = None, bs: Optional[int] = None,
                           seed: Optional[int] = None, use_cache: bool = True,
                           special_token: str = '<LT_T2I>') -> torch.Tensor:
        """``[images_num, N*N]`` image codes for ``text`` (left text with ``special_token``)."""
        bs, sampling = self._sampling(bs, top_k, top_p, temperature, 'img')
        return tasks.text_to_image(self.parts, text, images_num, sampling, bs=bs, seed=seed, use_cache=use_cache,
                                   image_prompts=image_prompts, token=special_token)

    def generate_codebooks_cfg(self, text: str, images_num: int, template: Optional[str] = None, image_prompts=None,
                               top_k: Optional[int] = None, top_p: Optional[float] = None, late_softmax: bool = False,
                               temperature: Optional[float] = None, bs: Optional[int] = None,
                               seed: Optional[int] = None, use_cache: bool = True, weight_cfg: float = 0.2,
                               special_token: str = '<LT_UNK>') -> torch.Tensor:
        """Codes sampled from ``(1-w) * p(text) + w * p(template.format(text=text))`` (per-branch
        top-k/top-p; with ``late_softmax`` the filtered logits are mixed before one softmax)."""
        bs, sampling = self._sampling(bs, top_k, top_p, temperature, 'img')
        return tasks.text_to_image(self.parts, text, images_num, sampling, bs=bs, seed=seed, use_cache=use_cache,
                                   image_prompts=image_prompts, guide=template or '', guide_token=special_token,
                                   weight_cfg=weight_cfg, late_softmax=late_softmax)

    def self_reranking_by_text(self, text: str, codebooks, bs: Optional[int] = None, seed: Optional[int] = None,
                               l_template: str = '', l_special_token: str = '<LT_I2T>',
                               r_special_token: str = '<RT_I2T>', ppl_txt_w: float = 0.95, *,
                               reencode: bool = False):
        """``(ppl_txt, ppl_img, scores)`` numpy arrays for codebooks with ``text`` as the right text.

        ``reencode=True`` scores what the pictures show: the codebooks are decoded by the VAE
        and encoded again, so a sample whose codes do not fit together (and decode to a
        malformed picture) is judged by its picture, as a real photo would be. ``seed`` has no
        effect (scoring is deterministic); passing it warns.
        """
        warn_ignored_seed('self_reranking_by_text', seed)
        ppl_txt, ppl_img = tasks.rerank_by_text(self.parts, text, codebooks, self.bs if bs is None else bs,
                                                l_template=l_template, l_token=l_special_token,
                                                r_token=r_special_token, reencode_codes=reencode)
        scores = tasks.rerank_scores(ppl_txt, ppl_img, ppl_txt_w, self.q)
        return ppl_txt.cpu().numpy(), ppl_img.cpu().numpy(), scores.cpu().numpy()

    def dream(self, text: str, images_num: int, codebooks_num: int, image_prompts=None, template: Optional[str] = None,
              top_k: int = DEFAULT_IMAGE_SAMPLING.top_k, top_p: float = DEFAULT_IMAGE_SAMPLING.top_p,
              temperature: float = DEFAULT_IMAGE_SAMPLING.temperature, bs: Optional[int] = None,
              seed: Optional[int] = None, use_cache: bool = True, special_token: str = '<LT_T2I>',
              ppl_txt_w: float = 0.95, reencode: bool = False, upscale=None):
        """Generate ``codebooks_num`` images, keep the best ``images_num`` by self-reranking
        (``reencode``: see :meth:`self_reranking_by_text`).

        ``upscale``: 2, 4 or 8 (or 'x4') returns the images upscaled by ruDALL-E's Real-ESRGAN
        (:func:`rudolph.superres.get_realesrgan`, loaded once per api on the model's device), or a
        loaded :class:`~rudolph.superres.RealESRGAN` to use. Returns ``(pil_images, [{'ppl_txt',
        'ppl_img', 'score'}])``, best first.
        """

        check_count('images_num', images_num)
        check_count('codebooks_num', codebooks_num)
        if images_num > codebooks_num:
            raise ConfigError(f'images_num ({images_num}) cannot exceed codebooks_num ({codebooks_num})')
        template = check_template('template', template or None, default='{text}', slot='text', what='prompt')
        require_vae(self.vae, 'dream')
        upscaler = self._upscaler(upscale)
        bs, sampling = self._sampling(bs, top_k, top_p, temperature, 'img')
        codebooks, rows = tasks.best_images(self.parts, text, codebooks_num, images_num, sampling, bs, seed=seed,
                                            reencode_codes=reencode, text_weight=ppl_txt_w, q=self.q,
                                            prompt=template.format(text=text), image_prompts=image_prompts,
                                            token=special_token, use_cache=use_cache)
        images = [img for batch in tasks.decode_images(self.vae, codebooks, len(codebooks), upscaler) for img in batch]
        return images, [{'ppl_txt': r['ppl_text'], 'ppl_img': r['ppl_image'], 'score': r['score']} for r in rows]

    def _upscaler(self, upscale):
        """``None``, a loaded upscaler, or the Real-ESRGAN of scale ``upscale`` (loaded once, then kept)."""

        # in the model's precision (fp16, bf16 or fp32)
        return cached_realesrgan(self.__dict__.setdefault('_upscalers', {}), upscale, model_device(self.model),
                                 next(self.model.parameters()).dtype)

    # ------------------------------------------------------------------ texts
    def generate_texts(self, template: str = '', top_k: Optional[int] = None, top_p: Optional[float] = None,
                       texts_num: int = 48, early_stop: Optional[int] = None, temperature: Optional[float] = None,
                       bs: Optional[int] = None, seed: Optional[int] = None, use_cache: bool = True,
                       special_token: str = '<LT_T2T>',
                       allowed_token_ids: Optional[Sequence[int]] = None) -> List[Dict[str, Any]]:
        """Texts continuing ``template`` as ``{'text', 'ppl_txt', 'count'}``, sorted by perplexity.

        ``early_stop``: generate only up to this left-text position; ``allowed_token_ids``:
        sample only among these ids. Generation also stops once every text has ended.
        """
        bs, sampling = self._sampling(bs, top_k, top_p, temperature, 'txt')
        rows = tasks.texts(self.parts, template, texts_num, sampling, bs, seed=seed, use_cache=use_cache,
                           token=special_token, early_stop=early_stop, allowed_token_ids=allowed_token_ids)
        return [{'text': r['text'], 'ppl_txt': r['ppl'], 'count': r['count']} for r in rows]

    def generate_captions(self, pil_img, early_stop: Optional[int] = None, top_k: Optional[int] = None,
                          top_p: Optional[float] = None, captions_num: int = 48, temperature: Optional[float] = None,
                          bs: Optional[int] = None, seed: Optional[int] = None, use_cache: bool = True,
                          l_template: str = '', r_template: str = '', l_special_token: str = '<LT_I2T>',
                          r_special_token: str = '<RT_I2T>') -> Tuple[List[str], np.ndarray]:
        """Unique captions (right text after the image, starting with ``r_template``) and their counts.

        ``early_stop``: generate only the first ``early_stop`` right-text positions.
        """
        bs, sampling = self._sampling(bs, top_k, top_p, temperature, 'txt')
        counts = tasks.caption_counts(self.parts, pil_img, captions_num, sampling, bs, seed=seed,
                                      use_cache=use_cache, r_template=r_template, l_template=l_template,
                                      l_token=l_special_token, r_token=r_special_token, early_stop=early_stop)
        return list(counts), np.array(list(counts.values()), dtype=np.int64)

    def self_reranking_by_image(self, texts: Sequence[str], pil_img, bs: Optional[int] = 8, seed: Optional[int] = None,
                                l_special_token: str = '<LT_T2I>', ppl_txt_w: float = 0.05):
        """``(ppl_txt, ppl_img, scores)`` numpy arrays of ``texts`` as the left text before the image.

        ``seed`` (the original's default was 42) has no effect: scoring is deterministic; passing it warns.
        """
        warn_ignored_seed('self_reranking_by_image', seed)
        ppl_txt, ppl_img = tasks.rerank_by_image(self.parts, texts, pil_img, self.bs if bs is None else bs,
                                                 token=l_special_token, name='text')
        scores = tasks.rerank_scores(ppl_txt, ppl_img, ppl_txt_w, self.q)
        return ppl_txt.cpu().numpy(), ppl_img.cpu().numpy(), scores.cpu().numpy()

    def image_captioning(self, pil_img, r_template: str = 'на картинке', early_stop: int = 64, captions_num: int = 5,
                         seed: Optional[int] = None, bs: Optional[int] = None, generations_num: int = 48,
                         top_k: Optional[int] = None, top_p: Optional[float] = None,
                         temperature: Optional[float] = None, ppl_txt_w: float = 0.05,
                         l_special_token: str = '<LT_T2I>', r_special_token: str = '<RT_I2T>') -> List[Dict[str, Any]]:
        """Generate ``generations_num`` captions, rerank by image (score / count), keep ``captions_num``."""
        bs, sampling = self._sampling(bs, top_k, top_p, temperature, 'txt')
        rows = tasks.captioning(self.parts, pil_img, captions_num, generations_num, sampling, bs, seed=seed,
                                r_template=r_template, early_stop=early_stop, text_weight=ppl_txt_w, q=self.q,
                                l_token=l_special_token, r_token=r_special_token)
        return [{'text': r['text'], 'score': r['score'], 'count': r['count'], 'ppl_txt': r['ppl_text'],
                 'ppl_img': r['ppl_image']} for r in rows]

    def vqa(self, pil_img, question: str, answers_num: int = 1, template: str = VQA_TEMPLATE,
            generations_num: int = 16, early_stop: Optional[int] = None, top_k: Optional[int] = None,
            top_p: Optional[float] = None, temperature: Optional[float] = None, bs: Optional[int] = None,
            seed: Optional[int] = None, l_special_token: str = '<LT_I2T>',
            r_special_token: str = '<RT_I2T>') -> List[Dict[str, Any]]:
        """Answers to ``question`` about ``pil_img``: captioning with the right text ``template``.

        The question goes into the right-text template (``'вопрос: {question} ответ:'``)
        and the model continues it; returns up to ``answers_num`` ``{'answer', 'count'}``,
        most frequent first (ties: first generated first).
        """
        bs, sampling = self._sampling(bs, top_k, top_p, temperature, 'txt')
        return tasks.vqa(self.parts, pil_img, question, answers_num, generations_num, sampling, bs,
                         template=template, seed=seed, early_stop=early_stop, l_token=l_special_token,
                         r_token=r_special_token)

    # ------------------------------------------------------------------ classification
    def zs_clf(self, pil_img, classes: Sequence[str], bs: int = 10, r_template: Optional[str] = None,
               l_template: Optional[str] = None, seed: Optional[int] = None, r_special_token: str = '<RT_I2T>',
               l_special_token: str = '<LT_I2T>') -> Dict[str, Any]:
        """Zero-shot classification by right-text perplexity (``{'label', 'class', 'scores', 'ties'}``).

        ``'ties'`` lists every class tied for the best score (one class unless it is a tie); a
        warning names the classes the tokenizer encodes to unknown tokens only (they score alike).

        ``l_template`` may also mention the class (``'{}'``); when it does not, the left text
        and the image are one shared prefix computed once. ``seed`` has no effect (scoring is
        deterministic); passing it warns.
        """
        warn_ignored_seed('zs_clf', seed)
        result = tasks.zero_shot(self.parts, pil_img, classes, r_template, self.bs if bs is None else bs,
                                 l_template=l_template or '', r_token=r_special_token, l_token=l_special_token,
                                 r_name='r_template')
        return {k: result[k] for k in ('label', 'class', 'scores', 'ties')}
