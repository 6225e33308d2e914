"""transformers' own common tests (`ModelTesterMixin`, `ConfigTester`) run against the concept encoders.

Tiny configs of [`ConceptTextModel`] (transformer and conv encoders), [`ConceptVisionModel`] and
[`ConceptModel`], set up the way transformers' CLIP tests set up theirs. The suites come from the
transformers sdist of the installed version (`make upstream-tests`; see upstream_suites.py). Every skip
below says why the upstream test cannot apply; docs/conformance.md has the counts.
"""

import unittest

import torch
from parameterized import parameterized
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES
from upstream_suites import import_upstream

from hf_textimg.concept import (
    ConceptConfig,
    ConceptModel,
    ConceptTextConfig,
    ConceptTextModel,
    ConceptVisionConfig,
    ConceptVisionModel,
)

modeling_common, configuration_common = import_upstream("transformers", "test_modeling_common", "test_configuration_common")
ModelTesterMixin, ConfigTester = modeling_common.ModelTesterMixin, configuration_common.ConfigTester
ids_tensor, floats_tensor = modeling_common.ids_tensor, modeling_common.floats_tensor
random_attention_mask = modeling_common.random_attention_mask

COMPOSITE = "ConceptOutput keeps each tower's output whole (text_model_output, vision_model_output), as CLIPOutput does; the tower tests check them"
BASE_MODELS = ((ConceptConfig, ConceptModel), (ConceptTextConfig, ConceptTextModel), (ConceptVisionConfig, ConceptVisionModel))


def setUpModule():
    """The suite tells base models from task heads (which must return a loss) by transformers' static table of base
    classes, `MODEL_MAPPING_NAMES`, which lists only transformers' own models. Ours are base models, registered with
    `AutoModel` by `import hf_textimg.concept`; list them there too while this module runs."""
    for config_class, model_class in BASE_MODELS:
        MODEL_MAPPING_NAMES.setdefault(config_class.model_type, model_class.__name__)


def tearDownModule():
    for config_class, _ in BASE_MODELS:
        MODEL_MAPPING_NAMES.pop(config_class.model_type, None)


class ConceptTextModelTester:
    def __init__(self, parent, batch_size=4, seq_length=7, vocab_size=50, hidden_size=32, num_hidden_layers=2,
                 num_attention_heads=4, intermediate_size=37, projection_dim=16, encoder_type="transformer"):
        self.parent, self.batch_size, self.seq_length, self.vocab_size = parent, batch_size, seq_length, vocab_size
        self.hidden_size, self.num_hidden_layers, self.num_attention_heads = hidden_size, num_hidden_layers, num_attention_heads
        self.intermediate_size, self.projection_dim, self.encoder_type = intermediate_size, projection_dim, encoder_type
        self.is_training = True

    def get_config(self) -> ConceptTextConfig:
        return ConceptTextConfig(
            vocab_size=self.vocab_size, hidden_size=self.hidden_size, num_layers=self.num_hidden_layers,
            num_heads=self.num_attention_heads, intermediate_size=self.intermediate_size, max_position_embeddings=16,
            projection_dim=self.projection_dim, encoder_type=self.encoder_type, conv_kernel_size=3,
        )

    def prepare_config_and_inputs(self):
        input_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size)
        attention_mask = random_attention_mask([self.batch_size, self.seq_length])
        return self.get_config(), input_ids, attention_mask

    def prepare_config_and_inputs_for_common(self):
        config, input_ids, attention_mask = self.prepare_config_and_inputs()
        return config, {"input_ids": input_ids, "attention_mask": attention_mask}


class ConceptVisionModelTester:
    def __init__(self, parent, batch_size=4, image_size=32, num_channels=3, base_channels=8, num_stages=2, projection_dim=16):
        self.parent, self.batch_size, self.image_size, self.num_channels = parent, batch_size, image_size, num_channels
        self.base_channels, self.num_stages, self.projection_dim = base_channels, num_stages, projection_dim
        self.num_hidden_layers = num_stages  # hidden_states: the stem's output, then one per stage
        self.is_training = True

    def get_config(self) -> ConceptVisionConfig:
        return ConceptVisionConfig(
            image_size=self.image_size, num_channels=self.num_channels, base_channels=self.base_channels,
            num_stages=self.num_stages, layers_per_stage=1, norm_num_groups=4, projection_dim=self.projection_dim,
        )

    def prepare_config_and_inputs(self):
        pixel_values = floats_tensor([self.batch_size, self.num_channels, self.image_size, self.image_size]) * 2 - 1
        return self.get_config(), pixel_values

    def prepare_config_and_inputs_for_common(self):
        config, pixel_values = self.prepare_config_and_inputs()
        return config, {"pixel_values": pixel_values}


class ConceptModelTester:
    def __init__(self, parent):
        self.parent = parent
        self.text_model_tester = ConceptTextModelTester(parent)
        self.vision_model_tester = ConceptVisionModelTester(parent)
        self.batch_size, self.seq_length = self.text_model_tester.batch_size, self.text_model_tester.seq_length
        self.is_training = True

    def get_config(self) -> ConceptConfig:
        text, vision = self.text_model_tester.get_config(), self.vision_model_tester.get_config()
        return ConceptConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=text.projection_dim)

    def prepare_config_and_inputs_for_common(self):
        _, input_ids, attention_mask = self.text_model_tester.prepare_config_and_inputs()
        _, pixel_values = self.vision_model_tester.prepare_config_and_inputs()
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "pixel_values": pixel_values, "return_loss": True}
        return self.get_config(), inputs


class ConceptModelTesterMixin(ModelTesterMixin):
    # The suite checks `_init_weights` covers every weight only for models it dates (by a copyright line) to 2023
    # or later, unless this is set; ours have no such line.
    test_can_init_all_missing_weights_before_2023 = True


class ConceptTextModelTest(ConceptModelTesterMixin, unittest.TestCase):
    all_model_classes = (ConceptTextModel,)
    encoder_type = "transformer"

    def setUp(self):
        self.model_tester = ConceptTextModelTester(self, encoder_type=self.encoder_type)
        self.config_tester = ConfigTester(self, config_class=ConceptTextConfig, hidden_size=32, vocab_size=50)

    def test_config(self):
        self.config_tester.run_common_tests()

    @parameterized.expand([True, False, None])
    def test_get_text_features_output(self, return_dict: bool | None):
        """Upstream's version reads the token width off `config.text_config`: it was written for dual models (CLIP's
        towers have no `get_text_features`). The same checks, with the tower's own config."""
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        if return_dict is not None:
            config.return_dict = return_dict
        with torch.no_grad():
            outputs = ConceptTextModel(config).eval().get_text_features(**inputs)
        if return_dict is False:
            self.assertIsInstance(outputs, tuple)
            return
        self.assertIsInstance(outputs, BaseModelOutputWithPooling)
        self.assertEqual(outputs.last_hidden_state.shape, (*inputs["input_ids"].shape, config.hidden_size))
        self.assertEqual(outputs.pooler_output.shape, (len(inputs["input_ids"]), config.projection_dim))


class ConceptTextModelConvTest(ConceptTextModelTest):
    """The same tower with `encoder_type="conv"`: residual 1-D conv blocks, so no attention to return."""

    encoder_type = "conv"
    has_attentions = False


class ConceptVisionModelTest(ConceptModelTesterMixin, unittest.TestCase):
    all_model_classes = (ConceptVisionModel,)
    has_attentions = False  # a CNN
    test_resize_embeddings = False  # no token embeddings
    # The upstream switch for image towers whose last_hidden_state is not (B, ..., hidden_size): ours is the
    # channel-first feature map (B, C, h, w), as transformers' CNNs (ResNet, ConvNeXt) return it.
    skip_test_image_features_output_shape = True

    def setUp(self):
        self.model_tester = ConceptVisionModelTester(self)
        self.config_tester = ConfigTester(
            self, config_class=ConceptVisionConfig, has_text_modality=False,
            common_properties=["image_size", "num_channels", "projection_dim"], image_size=32, base_channels=32,
        )

    def test_config(self):
        self.config_tester.run_common_tests()

    def test_hidden_states_output(self):
        """The upstream test reads (sequence, hidden_size) off each hidden state; a CNN's are feature maps. As
        transformers' ResNet tests do: count them (stem + one per stage) and check each (C, H, W)."""
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        widths = [config.base_channels] + config.stage_channels
        sides = [config.image_size] + [config.image_size // 2**i for i in range(config.num_stages)]
        for from_config in (False, True):
            config.output_hidden_states = from_config
            with torch.no_grad():
                outputs = ConceptVisionModel(config).eval()(**inputs, **({} if from_config else {"output_hidden_states": True}))
            self.assertEqual([tuple(h.shape[1:]) for h in outputs.hidden_states], [(w, s, s) for w, s in zip(widths, sides)])

    @unittest.skip(reason="A CNN has no input embeddings (the test asserts an nn.Embedding); transformers' ResNet tests skip it too")
    def test_model_get_set_embeddings(self):
        pass


class ConceptModelTest(ConceptModelTesterMixin, unittest.TestCase):
    all_model_classes = (ConceptModel,)
    additional_model_inputs = ["pixel_values"]  # as CLIP's: the attention tests then compare logits_per_text
    test_resize_embeddings = False
    skip_test_image_features_output_shape = True  # see ConceptVisionModelTest
    _is_composite = True

    def setUp(self):
        self.model_tester = ConceptModelTester(self)
        self.config_tester = ConfigTester(
            self, config_class=ConceptConfig, has_text_modality=False,
            common_properties=["projection_dim", "logit_scale_init_value"],
        )

    def test_config(self):
        self.config_tester.run_common_tests()

    @unittest.skip(reason=COMPOSITE)
    def test_hidden_states_output(self):
        pass

    @unittest.skip(reason=COMPOSITE)
    def test_attention_outputs(self):
        pass

    @unittest.skip(reason=COMPOSITE)
    def test_retain_grad_hidden_states_attentions(self):
        pass

    @unittest.skip(reason="The image tower is a CNN: get_image_features has no attentions to return (the text tower's are tested)")
    def test_get_image_features_attentions(self):
        pass
