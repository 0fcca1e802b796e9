"""Every public name of the original package (ai-forever/ru-dolph, each release's ``rudolph/`` modules) and
the ruDALL-E names its notebooks import, from the path the original code imports them from (issue 25)."""
import importlib
import inspect

import pytest

#: module of the original -> its public names (0.0.1rc10 and the earlier releases' extra names)
ORIGINAL = {
    'rudolph': ['api', 'utils', 'model', 'pipelines', '__version__'],
    'rudolph.api': ['ruDolphApi', 'DEFAULT_SPC_TOKENS'],
    'rudolph.model': ['ruDolphModel', 'FP16Module', 'get_rudolph_model', 'MODELS'],
    'rudolph.model.model': ['ruDolphModel'],
    'rudolph.model.fp16': ['FP16Module', 'conversion_helper', 'fp32_to_fp16', 'fp16_to_fp32'],
    'rudolph.model.image_attention': ['get_row_mask', 'get_col_mask', 'get_conv_mask'],
    'rudolph.model.transformer': ['gelu', 'gelu_jit', 'Layer', 'SparseTransformer', 'SparseTransformerLayer',
                                  'DalleSelfAttention', 'DalleMLP'],
    'rudolph.model.utils': ['exists', 'is_empty', 'ensure_divisibility', 'divide', 'split_tensor_along_last_dim',
                            'init_method_normal', 'get_attention_mask', 'get_t2t_attention_mask',
                            'get_i2t_attention_mask'],
    'rudolph.pipelines': ['generate_codebooks', 'generate_captions', 'show', 'self_reranking_by_text',
                          'self_reranking_by_image', 'zs_clf', 'generate_texts', 'ce_to_ppl'],
    'rudolph.utils': ['seed_everything', 'torch_tensors_to_pil_list', 'pil_list_to_torch_tensors'],
    'rudolph.tokenizer': ['get_tokenizer', 'YTTMTokenizerWrapper'],  # rudolph/tokenizer.py of the first release
}

#: what the original notebooks import from ruDALL-E -> where it is here
RUDALLE = {
    'rudalle.get_tokenizer': 'rudolph.get_tokenizer',
    'rudalle.get_vae': 'rudolph.get_vae',
    'rudalle.tokenizer.get_tokenizer': 'rudolph.tokenizer.get_tokenizer',
    'rudalle.utils.seed_everything': 'rudolph.utils.seed_everything',
    'rudalle.utils.torch_tensors_to_pil_list': 'rudolph.utils.torch_tensors_to_pil_list',
    'rudalle.pipelines.show': 'rudolph.utils.show',
    'rudalle.image_prompts.ImagePrompts': 'rudolph.image_prompts.ImagePrompts',
}


@pytest.mark.parametrize('module,names', sorted(ORIGINAL.items()))
def test_original_names_import_from_their_original_module(module, names):
    loaded = importlib.import_module(module)
    missing = [name for name in names if not hasattr(loaded, name)]
    assert not missing, f'{module} lacks {missing}'
    namespace = {}
    exec(f'from {module} import {", ".join(names)}', namespace)  # the statement old code runs
    assert all(namespace[name] is getattr(loaded, name) for name in names)


@pytest.mark.parametrize('rudalle_name,here', sorted(RUDALLE.items()))
def test_rudalle_names_used_by_the_notebooks(rudalle_name, here):
    module, name = here.rsplit('.', 1)
    value = getattr(importlib.import_module(module), name)
    assert callable(value), f'{here} (for {rudalle_name})'


def test_original_signatures_that_notebooks_call_positionally():
    from rudolph.image_prompts import ImagePrompts
    from rudolph.model import get_rudolph_model
    from rudolph.model.image_attention import get_conv_mask

    assert list(inspect.signature(get_rudolph_model).parameters)[:5] == ['name', 'pretrained', 'fp16', 'device',
                                                                         'cache_dir']
    assert list(inspect.signature(ImagePrompts).parameters)[:6] == ['pil_image', 'borders', 'vae', 'device',
                                                                    'crop_first', 'disable_gumbel_softmax']
    assert inspect.signature(get_conv_mask).parameters['kernel'].default == 11
