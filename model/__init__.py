"""L4S-LLM, the ML library: state encoder, backbone with LoRA, L4S head; training, evaluation, inference, distillation.

Public API (imported lazily so ``import l4stb.model`` stays cheap)::

    from l4stb.model import TrainConfig, train_and_evaluate, ModelReport, load_policy, Policy

    report = train_and_evaluate(splits, out_dir, TrainConfig(epochs=2), progress=rich_progress)
    policy = load_policy(out_dir / "checkpoint"); action = policy.decide(raw_state_row)
"""

import importlib

_EXPORTS = {
    "TrainConfig": "l4stb.model.config",
    "train_and_evaluate": "l4stb.model.run",
    "ModelReport": "l4stb.model.run",
    "load_policy": "l4stb.model.inference",
    "Policy": "l4stb.model.inference",
    "load_backbone": "l4stb.model.backbones",
    "BUILTIN_BACKBONES": "l4stb.model.backbones",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'l4stb.model' has no attribute {name!r}")
