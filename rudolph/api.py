"""``ruDolphApi``: the task-token API of RuDOLPH v2 / 2.7B (original ``rudolph.api``), on the shared engine.

Texts carry a task token right after bos (``[2, <LT_T2I>] + bpe + [3]``). Reranking
scores are ``(ppl - min) / (quantile_q(ppl) - min)`` mixed with ``ppl_txt_w``.
"""
from collections import Counter
from copy import deepcopy
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from . import pipelines
from .codec import encode_image, encode_text
from .engine import (Layout, ScorePart, ce_to_ppl, check_tokenizer, check_vae, cross_entropy, first_eos_cut, generate,
                     model_device, require_vae, tokenizer_vocab_limit)
from .errors import ConfigError, InputError
from .model.configs import DEFAULT_SPC_TOKENS
from .sampling import check_sampling_args

__all__ = ['ruDolphApi', 'DEFAULT_SPC_TOKENS', 'VQA_TEMPLATE']

#: right-text template of :meth:`ruDolphApi.vqa`; the answer is generated after it.
VQA_TEMPLATE = 'вопрос: {question} ответ:'


class ruDolphApi:  # noqa: N801 (original name)
    """Generation, captioning, reranking and zero-shot classification with task tokens.

    ``bs`` and the ``txt_*`` / ``img_*`` sampling defaults apply when a method gets ``None``;
    ``q`` is the quantile that normalises perplexities in reranking scores; ``quite=True``
    (sic, original name) hides progress bars. ``vae`` may be ``None`` for text-only use; the
    tasks that encode or decode pictures then raise a ``ConfigError``.
    """

    def __init__(self, model, tokenizer, vae, spc_tokens: Optional[Mapping[str, int]] = None, quite: bool = False, *,
                 bs: int = 24, q: float = 0.5, txt_top_k: int = 64, img_top_k: int = 768, txt_top_p: float = 0.8,
                 img_top_p: float = 0.99, txt_temperature: float = 0.9, img_temperature: float = 1.0):
        if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0.0 <= q <= 1.0:
            raise ConfigError(f'q must be a quantile in [0, 1], got {q!r}')
        pipelines._check_count('bs', bs)
        check_sampling_args(txt_top_k, txt_top_p, txt_temperature)
        check_sampling_args(img_top_k, img_top_p, img_temperature)
        if spc_tokens is None:  # the task tokens the model was loaded with, else the published ones
            spc_tokens = getattr(model, 'spc_tokens', None) or DEFAULT_SPC_TOKENS
        self.spc_tokens = deepcopy(dict(spc_tokens))
        self.model, self.tokenizer, self.vae = model, tokenizer, vae
        self.layout = Layout.from_model(model)
        check_tokenizer(tokenizer, self.layout)
        self.text_limit = tokenizer_vocab_limit(tokenizer, self.layout)  # sampled ids >= it become eos
        check_vae(vae, self.layout)
        self._check_spc_tokens(model.get_param('text_special_tokens'))
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

    def _check_spc_tokens(self, n_special: int) -> None:
        """Task tokens must be ids of the model's special-token block ``[plain, plain + n_special)``."""
        if not n_special:
            return  # no task tokens in this model (350M v1): special tokens are never inserted
        low, high = self.layout.plain_text_vocab, self.layout.plain_text_vocab + n_special
        bad = {k: v for k, v in self.spc_tokens.items()
               if isinstance(v, bool) or not isinstance(v, int) or not low <= v < high}
        if bad:
            raise ConfigError(f'task tokens {bad} are outside the model\'s special-token ids [{low}, {high}) '
                             f'(text vocabulary {self.layout.V}); pass spc_tokens= with the ids this model was '
                             'trained with (e.g. MODELS[name][\'spc_tokens\'])')

    # ------------------------------------------------------------------ text codec
    def _special(self, name: Optional[str]) -> Optional[int]:
        if name is None or not self.text_special_tokens:
            return None  # models without task tokens (350M v1)
        if name not in self.spc_tokens:
            raise ConfigError(f'unknown special token {name!r}; expected one of {sorted(self.spc_tokens)}')
        return self.spc_tokens[name]

    def encode_text(self, text: str, text_seq_length: int, special_token: Optional[str] = None) -> torch.Tensor:
        """``[2, <special>] + bpe(text) + [3]`` padded/cut to ``text_seq_length`` (no special on v1 models)."""
        # Inserting after bos and cutting equals encoding [2, spc] + bpe + [3] at this length;
        # a text that does not fit is cut with a warning.
        return encode_text(self.tokenizer, text, text_seq_length, 'text', self._special(special_token))

    def decode_text(self, encoded: torch.Tensor) -> str:
        """Text of ids, dropping pad/unk/bos/eos and the task tokens."""
        special = torch.tensor(sorted(self.spc_tokens.values()), device=encoded.device)
        return self.tokenizer.decode_text(encoded[~torch.isin(encoded, special)])

    def _decode_counts(self, tokens: torch.Tensor) -> Counter:
        counts: Counter = Counter()
        for row in tokens:
            text = self.decode_text(first_eos_cut(row)).strip()
            if text:
                counts.update([text])
        return counts

    def _template_prefix(self, template: str, length: int, special_token: Optional[str]) -> torch.Tensor:
        return pipelines.template_prefix(self.encode_text(template, length, special_token))

    # ------------------------------------------------------------------ helpers
    def _defaults(self, bs, top_k, top_p, temperature, kind: str):
        pre = 'img' if kind == 'img' else 'txt'
        out = (self.bs if bs is None else bs, getattr(self, f'{pre}_top_k') if top_k is None else top_k,
               getattr(self, f'{pre}_top_p') if top_p is None else top_p,
               getattr(self, f'{pre}_temperature') if temperature is None else temperature)
        pipelines._check_count('bs', out[0])
        check_sampling_args(*out[1:])
        return out

    def _scores(self, ppl_txt: torch.Tensor, ppl_img: torch.Tensor, ppl_txt_w: float) -> torch.Tensor:
        def norm(x):
            x = x.float()
            low = x.min()
            # A constant ppl (e.g. a single candidate) would give 0/0: it then contributes 0.
            return (x - low) / (x.quantile(q=self.q) - low).clamp(min=torch.finfo(x.dtype).tiny)
        return norm(ppl_txt) * ppl_txt_w + norm(ppl_img) * (1 - ppl_txt_w)

    @staticmethod
    def ce_to_ppl(ce: torch.Tensor) -> torch.Tensor:
        return ce_to_ppl(ce)

    @staticmethod
    def seed_everything(seed: Optional[int]) -> None:
        """Kept for compatibility: seeds the global RNGs (the API itself uses private generators)."""
        if seed is not None:
            from .utils import seed_everything
            seed_everything(seed)

    @staticmethod
    def show(pil_images, nrow: int = 4, size: int = 11, save_dir: Optional[str] = None, show: bool = True) -> None:
        pipelines.show(pil_images, nrow=nrow, size=size, save_dir=save_dir, show=show)

    # ------------------------------------------------------------------ images
    def generate_codebooks(self, text: str, images_num: int, image_prompts=None, top_k: Optional[int] = None,
                           top_p: Optional[float] = None, temperature: Optional[float] = None, bs: Optional[int] = None,
                           seed: Optional[int] = None, use_cache: bool = True,
                           special_token: str = '<LT_T2I>') -> torch.Tensor:
        """``[images_num, N*N]`` image codes for ``text`` (left text with ``special_token``)."""
        pipelines._check_count('images_num', images_num)
        bs, top_k, top_p, temperature = self._defaults(bs, top_k, top_p, temperature, 'img')
        encoded = self.encode_text(pipelines._check_text('text', text), self.layout.L, special_token)
        return self._codebooks(encoded, images_num, image_prompts, top_k, top_p, temperature, bs, seed, use_cache)

    def _codebooks(self, prefixes, images_num, image_prompts, top_k, top_p, temperature, bs, seed, use_cache,
                   weights=None, late_softmax=False) -> torch.Tensor:
        L, N2 = self.layout.L, self.layout.N2
        fixed = pipelines.prompt_positions(image_prompts, self.layout) if image_prompts is not None else None
        seq = generate(self.model, prefixes, L + N2, images_num, vocab=self.layout.image_slice, top_k=top_k,
                       top_p=top_p, temperature=temperature, seed=seed, bs=bs, use_cache=use_cache, fixed=fixed,
                       weights=weights, late_softmax=late_softmax, progress=not self.quite, desc='images')
        return seq[:, L:]

    def generate_codebooks_cfg(self, text: str, images_num: int, template: Optional[str] = None, image_prompts=None,
                               top_k: Optional[int] = None, top_p: Optional[float] = None, late_softmax: bool = False,
                               temperature: Optional[float] = None, bs: Optional[int] = None,
                               seed: Optional[int] = None, use_cache: bool = True, weight_cfg: float = 0.2,
                               special_token: str = '<LT_UNK>') -> torch.Tensor:
        """Codes sampled from ``(1-w) * p(text) + w * p(template.format(text=text))`` (per-branch
        top-k/top-p; with ``late_softmax`` the filtered logits are mixed before one softmax)."""
        if isinstance(weight_cfg, bool) or not isinstance(weight_cfg, (int, float)) or not 0.0 <= weight_cfg <= 1.0:
            raise ConfigError(f'weight_cfg must be in [0, 1], got {weight_cfg!r}')
        pipelines._check_count('images_num', images_num)
        bs, top_k, top_p, temperature = self._defaults(bs, top_k, top_p, temperature, 'img')
        text = pipelines._check_text('text', text)
        main = self.encode_text(text, self.layout.L, '<LT_T2I>')
        # The guide may omit {text} (an unconditional branch: the default is the empty text).
        template = pipelines._check_template('template', template or '', slot='text', what='prompt', required=False)
        guide = self.encode_text(template.format(text=text), self.layout.L, special_token)
        # A zero-weight branch changes nothing (and 0 * -inf would be nan with late_softmax).
        branches = [(w, e) for w, e in ((1 - weight_cfg, main), (weight_cfg, guide)) if w > 0]
        prefixes = torch.stack([e for _, e in branches])
        # The original halves bs (two model rows per sample); keep the memory footprint comparable.
        bs = max(1, bs // len(branches))
        return self._codebooks(prefixes, images_num, image_prompts, top_k, top_p, temperature, bs, seed, use_cache,
                               weights=[w for w, _ in branches], late_softmax=late_softmax)

    def self_reranking_by_text(self, text: str, codebooks, bs: Optional[int] = None, seed: Optional[int] = None,
                               l_template: str = '', l_special_token: str = '<LT_I2T>',
                               r_special_token: str = '<RT_I2T>', ppl_txt_w: float = 0.95, *,
                               reencode: bool = False):
        """``(ppl_txt, ppl_img, scores)`` numpy arrays for codebooks with ``text`` as the right text.

        ``reencode=True`` scores what the pictures show: the codebooks are decoded by the VAE
        and encoded again, so a sample whose codes do not fit together (and decode to a
        malformed picture) is judged by its picture, as a real photo would be.
        """
        bs = self.bs if bs is None else bs
        pipelines._check_count('bs', bs)
        L, N2, R, S = self.layout.L, self.layout.N2, self.layout.R, self.layout.S
        codes = pipelines._stack_codebooks(codebooks, self.layout).to(self.device)
        if reencode:
            codes = self._reencode(codes, bs)
        r_encoded = self.encode_text(pipelines._check_text('text', text), R, r_special_token).to(self.device)
        l_encoded = self.encode_text(l_template, L, l_special_token).to(self.device)
        n = codes.shape[0]
        ids = torch.cat((l_encoded.expand(n, -1), codes, r_encoded.expand(n, -1)), dim=1)
        ce_img, ce_txt = cross_entropy(self.model, ids, [
            ScorePart(L, L + N2 - 1, self.layout.image_slice),
            ScorePart(S - R, S - 1, self.layout.text_sample_slice, ignore_index=0),
        ], bs=bs, progress=not self.quite)
        ppl_txt, ppl_img = ce_to_ppl(ce_txt), ce_to_ppl(ce_img)
        scores = self._scores(ppl_txt, ppl_img, ppl_txt_w)
        return ppl_txt.cpu().numpy(), ppl_img.cpu().numpy(), scores.cpu().numpy()

    @torch.no_grad()
    def _reencode(self, codes: torch.Tensor, bs: int) -> torch.Tensor:
        """Codes of the VAE's own decoding of ``codes`` (in chunks of ``bs``)."""
        require_vae(self.vae, 'reencode=True')
        return torch.cat([self.vae.get_codebook_indices(self.vae.decode(chunk)).to(codes)
                          for chunk in codes.split(bs)])

    def dream(self, text: str, images_num: int, codebooks_num: int, image_prompts=None, template: Optional[str] = None,
              top_k: int = 768, top_p: float = 0.99, temperature: float = 1.0, bs: Optional[int] = None,
              seed: Optional[int] = None, use_cache: bool = True, special_token: str = '<LT_T2I>',
              ppl_txt_w: float = 0.95, reencode: bool = False):
        """Generate ``codebooks_num`` images, keep the best ``images_num`` by self-reranking
        (``reencode``: see :meth:`self_reranking_by_text`).

        Returns ``(pil_images, [{'ppl_txt', 'ppl_img', 'score'}])``, best first.
        """
        from .utils import torch_tensors_to_pil_list

        pipelines._check_count('images_num', images_num)
        pipelines._check_count('codebooks_num', codebooks_num)
        if images_num > codebooks_num:
            raise ConfigError(f'images_num ({images_num}) cannot exceed codebooks_num ({codebooks_num})')
        template = pipelines._check_template('template', template or None, default='{text}', slot='text',
                                             what='prompt')
        require_vae(self.vae, 'dream')
        codebooks = self.generate_codebooks(template.format(text=text), codebooks_num, image_prompts=image_prompts,
                                            top_k=top_k, top_p=top_p, temperature=temperature, bs=bs, seed=seed,
                                            use_cache=use_cache, special_token=special_token)
        ppl_txt, ppl_img, scores = self.self_reranking_by_text(text, codebooks, bs=bs, ppl_txt_w=ppl_txt_w,
                                                               reencode=reencode)
        indexes = scores.argsort()[:images_num]
        with torch.no_grad():
            images = self.vae.decode(codebooks[torch.as_tensor(indexes, device=codebooks.device)])
        result = [{'ppl_txt': ppl_txt[i], 'ppl_img': ppl_img[i], 'score': scores[i]} for i in indexes]
        return torch_tensors_to_pil_list(images), result

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
        pipelines._check_count('texts_num', texts_num)
        if early_stop is not None:
            pipelines._check_count('early_stop', early_stop)
        bs, top_k, top_p, temperature = self._defaults(bs, top_k, top_p, temperature, 'txt')
        L = self.layout.L
        end = min(early_stop or L, L)
        prefix = self._template_prefix(pipelines._check_text('template', template, allow_empty=True), L, special_token)
        if len(prefix) >= end:
            raise InputError(f'the template takes {len(prefix)} tokens, nothing left to generate before '
                             f'position {end} (early_stop={early_stop}, left text {L})')
        seq = generate(self.model, prefix, end, texts_num, vocab=self.layout.text_sample_slice, top_k=top_k,
                       top_p=top_p, temperature=temperature, seed=seed, bs=bs, use_cache=use_cache,
                       eos_from=self.text_limit, allowed_token_ids=allowed_token_ids, stop_at_eos=True,
                       progress=not self.quite, desc='texts')
        counts = self._decode_counts(seq)
        if not counts:
            return []
        texts = list(counts)
        ids = torch.stack([self.encode_text(t.lower().strip(), L, special_token) for t in texts])
        ce = cross_entropy(self.model, ids, [ScorePart(0, L - 1, self.layout.text_sample_slice, ignore_index=0)],
                           bs=bs)[0]
        ppl = ce_to_ppl(ce)
        return [{'text': texts[i], 'ppl_txt': round(ppl[i].item(), 2), 'count': counts[texts[i]]}
                for i in ppl.argsort().tolist()]

    def generate_captions(self, pil_img, early_stop: Optional[int] = None, top_k: Optional[int] = None,
                          top_p: Optional[float] = None, captions_num: int = 48, temperature: Optional[float] = None,
                          bs: Optional[int] = None, seed: Optional[int] = None, use_cache: bool = True,
                          l_template: str = '', r_template: str = '', l_special_token: str = '<LT_I2T>',
                          r_special_token: str = '<RT_I2T>') -> Tuple[List[str], np.ndarray]:
        """Unique captions (right text after the image, starting with ``r_template``) and their counts.

        ``early_stop``: generate only the first ``early_stop`` right-text positions.
        """
        pipelines._check_count('captions_num', captions_num)
        if early_stop is not None:
            pipelines._check_count('early_stop', early_stop)
        bs, top_k, top_p, temperature = self._defaults(bs, top_k, top_p, temperature, 'txt')
        require_vae(self.vae, 'generate_captions')
        L, N2, R = self.layout.L, self.layout.N2, self.layout.R
        end = L + N2 + min(early_stop or R, R)
        r_prefix = self._template_prefix(pipelines._check_text('r_template', r_template, allow_empty=True), R,
                                         r_special_token)
        l_encoded = self.encode_text(pipelines._check_text('l_template', l_template, allow_empty=True), L,
                                     l_special_token)
        image = encode_image(pil_img, self.vae, self.model)
        prefix = torch.cat((l_encoded.to(image.device), image, r_prefix.to(image.device)))
        if len(prefix) >= end:
            raise InputError(f'the right template takes {len(r_prefix)} tokens, nothing left to generate '
                             f'(early_stop={early_stop}, right text {R})')
        seq = generate(self.model, prefix, end, captions_num, vocab=self.layout.text_sample_slice, top_k=top_k,
                       top_p=top_p, temperature=temperature, seed=seed, bs=bs, use_cache=use_cache,
                       eos_from=self.text_limit, stop_at_eos=True, progress=not self.quite,
                       desc='captions')
        counts = self._decode_counts(seq[:, L + N2:])
        return list(counts), np.array(list(counts.values()), dtype=np.int64)

    def self_reranking_by_image(self, texts: Sequence[str], pil_img, bs: Optional[int] = 8, seed: Optional[int] = 42,
                                l_special_token: str = '<LT_T2I>', ppl_txt_w: float = 0.05):
        """``(ppl_txt, ppl_img, scores)`` numpy arrays of ``texts`` as the left text before the image."""
        texts = pipelines._check_texts('texts', texts)
        bs = self.bs if bs is None else bs
        pipelines._check_count('bs', bs)
        require_vae(self.vae, 'self_reranking_by_image')
        L, N2 = self.layout.L, self.layout.N2
        left = torch.stack([self.encode_text(t, L, l_special_token) for t in texts])
        image = encode_image(pil_img, self.vae, self.model)
        left = left.to(image.device)
        ids = torch.cat((left, image.expand(len(texts), -1)), dim=1)
        ce_txt, ce_img = cross_entropy(self.model, ids, [
            ScorePart(0, L - 1, self.layout.text_sample_slice, ignore_index=0),
            ScorePart(L, L + N2 - 1, self.layout.image_slice),
        ], bs=bs, progress=not self.quite)
        ppl_txt, ppl_img = ce_to_ppl(ce_txt), ce_to_ppl(ce_img)
        scores = self._scores(ppl_txt, ppl_img, ppl_txt_w)
        return ppl_txt.cpu().numpy(), ppl_img.cpu().numpy(), scores.cpu().numpy()

    def image_captioning(self, pil_img, r_template: str = 'на картинке', early_stop: int = 64, captions_num: int = 5,
                         seed: Optional[int] = None, bs: Optional[int] = None, generations_num: int = 48,
                         top_k: Optional[int] = None, top_p: Optional[float] = None,
                         temperature: Optional[float] = None, ppl_txt_w: float = 0.05,
                         l_special_token: str = '<LT_T2I>', r_special_token: str = '<RT_I2T>') -> List[Dict[str, Any]]:
        """Generate ``generations_num`` captions, rerank by image (score / count), keep ``captions_num``."""
        pipelines._check_count('captions_num', captions_num)
        pipelines._check_count('generations_num', generations_num)
        require_vae(self.vae, 'image_captioning')
        texts, counts = self.generate_captions(pil_img, r_template=r_template, early_stop=early_stop,
                                               captions_num=generations_num, bs=bs, top_k=top_k, top_p=top_p,
                                               temperature=temperature, seed=seed, r_special_token=r_special_token)
        if not texts:
            return []
        ppl_txt, ppl_img, scores = self.self_reranking_by_image(texts, pil_img, bs=bs, seed=seed,
                                                                l_special_token=l_special_token, ppl_txt_w=ppl_txt_w)
        scores = scores / counts
        return [{'text': texts[i], 'score': scores[i], 'count': counts[i], 'ppl_txt': ppl_txt[i],
                 'ppl_img': ppl_img[i]} for i in scores.argsort()[:captions_num]]

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
        if not isinstance(question, str) or not question.strip():
            raise InputError(f'question must be a non-empty string, got {question!r}')
        pipelines._check_count('answers_num', answers_num)
        pipelines._check_count('generations_num', generations_num)
        template = pipelines._check_template('template', template, slot='question', what='question')
        require_vae(self.vae, 'vqa')
        prompt = template.format(question=question.strip()).lower().strip()
        texts, counts = self.generate_captions(pil_img, early_stop=early_stop, top_k=top_k, top_p=top_p,
                                               captions_num=generations_num, temperature=temperature, bs=bs,
                                               seed=seed, r_template=prompt, l_special_token=l_special_token,
                                               r_special_token=r_special_token)
        # The decoded text repeats the prompt; the answer is what follows it.
        prompt_text = self.decode_text(self._template_prefix(prompt, self.layout.R, r_special_token)).strip()
        answers: Counter = Counter()
        for text, count in zip(texts, counts):
            answer = text[len(prompt_text):].strip() if text.startswith(prompt_text) else text
            if answer:
                answers[answer] += int(count)
        ranked = sorted(answers.items(), key=lambda kv: -kv[1])  # stable: ties keep generation order
        return [{'answer': a, 'count': c} for a, c in ranked[:answers_num]]

    # ------------------------------------------------------------------ classification
    def zs_clf(self, pil_img, classes: Sequence[str], bs: int = 10, r_template: Optional[str] = None,
               l_template: Optional[str] = None, seed: Optional[int] = None, r_special_token: str = '<RT_I2T>',
               l_special_token: str = '<LT_I2T>') -> Dict[str, Any]:
        """Zero-shot classification by right-text perplexity (``{'label', 'class', 'scores', 'ties'}``).

        ``'ties'`` lists every class tied for the best score (one class unless it is a tie); a
        warning names the classes the tokenizer encodes to unknown tokens only (they score alike).

        ``l_template`` may also mention the class (``'{}'``); when it does not, the left text
        and the image are one shared prefix computed once.
        """
        names = pipelines._check_classes(classes)
        r_template = pipelines._check_template('r_template', r_template or None)
        l_template = pipelines._check_template('l_template', l_template or '', required=False)
        l_template = pipelines._check_text('l_template', l_template, allow_empty=True)
        bs = self.bs if bs is None else bs
        pipelines._check_count('bs', bs)
        require_vae(self.vae, 'zs_clf')
        pipelines.warn_unknown_classes(self.tokenizer, names)
        L, R, S = self.layout.L, self.layout.R, self.layout.S
        right = torch.stack([self.encode_text(r_template.format(c).lower().strip(), R, r_special_token) for c in names])
        left = torch.stack([self.encode_text(l_template.format(c).lower().strip(), L, l_special_token) for c in names])
        image = encode_image(pil_img, self.vae, self.model)
        n = len(names)
        ids = torch.cat((left.to(image.device), image.expand(n, -1), right.to(image.device)), dim=1)
        ce = cross_entropy(self.model, ids, [ScorePart(S - R, S - 1, self.layout.text_sample_slice, ignore_index=0)],
                           bs=bs, progress=not self.quite)[0]
        return pipelines.classify(ce_to_ppl(ce), classes)
