"""Every public name the documentation gives keeps importing from the path it gives (the original
package's paths are in test_compat_names.py); a layout change that moves a module must keep these."""
import importlib

import pytest

PATHS = [
    ('rudolph', ['get_rudolph_model', 'get_tokenizer', 'get_vae', 'ruDolphApi', 'ruDolphModel', 'ImagePrompts',
                 'Components', 'MODELS', 'FP16Module', 'RudolphConfig', 'get_realesrgan', 'pipelines', 'utils']),
    ('rudolph.components', ['Components', 'load_vae']),
    ('rudolph.pretrained.components', ['Components', 'load_pretrained']),
    ('rudolph.model', ['get_rudolph_model', 'ruDolphModel', 'MODELS', 'KVCache', 'FP16Module', 'resolve_precision',
                       'Int8Linear', 'save_int8', 'get_row_mask', 'get_col_mask', 'get_conv_mask']),
    ('rudolph.model.model', ['ruDolphModel']),
    ('rudolph.model.image_attention', ['get_row_mask', 'get_col_mask', 'get_conv_mask']),
    ('rudolph.model.utils', ['get_attention_mask']),
    ('rudolph.api', ['ruDolphApi']),
    ('rudolph.pipelines', ['generate_codebooks', 'self_reranking_by_text', 'self_reranking_by_image',
                           'generate_captions', 'zs_clf', 'show']),
    ('rudolph.utils', ['seed_everything', 'torch_tensors_to_pil_list', 'pil_list_to_torch_tensors', 'show']),
    ('rudolph.image_prompts', ['ImagePrompts']),
    ('rudolph.vae', ['get_vae', 'preprocess_image']),
    ('rudolph.tokenizer', ['get_tokenizer', 'YTTMTokenizerWrapper']),
    ('rudolph.tasks', ['Parts', 'best_images', 'decode_images', 'captioning', 'vqa', 'zero_shot']),
    ('rudolph.tasks.batched', ['caption_images', 'vqa_images', 'classify_images', 'embed_images', 'embed_texts',
                               'text2image_prompts', 'caption_batch', 'row_seed']),
    ('rudolph.generation.engine', ['generate', 'cross_entropy', 'Layout', 'ScorePart']),
    ('rudolph.finetune', ['TrainConfig', 'train', 'prepare_dataset', 'freeze']),
    ('rudolph.demo', ['load_bundle', 'NAME']),
    ('rudolph.superres', ['get_realesrgan']),
    ('rudolph.errors', ['RudolphError', 'ConfigError', 'WeightsNotFoundError']),
]


@pytest.mark.parametrize('module, names', PATHS, ids=[m for m, _ in PATHS])
def test_public_names_import_from_their_documented_paths(module, names):
    loaded = importlib.import_module(module)
    missing = [name for name in names if not hasattr(loaded, name)]
    assert not missing, f'{module} lacks {missing}'


def test_the_components_path_is_the_same_class():
    from rudolph.components import Components as old
    from rudolph.pretrained.components import Components as new

    assert old is new
