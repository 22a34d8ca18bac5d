"""L4S-LLM: state encoder, backbone with LoRA, L4S head; training, evaluation and policy."""
