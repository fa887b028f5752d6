"""Parameter counts of a checkpoint from its config, on the meta device (no weights read): for backends whose
loaded model this process cannot reach, or whose kernels repack the weights (vLLM)."""


def parameter_counts(path: str) -> dict:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(path)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    embedding = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    return {"parameters": sum(p.numel() for p in model.parameters()),
            "embedding_parameters": embedding.numel(),
            "head_parameters": 0 if head is embedding else head.numel(),
            "num_layers": config.get_text_config().num_hidden_layers}


__all__ = ["parameter_counts"]
