"""Recovery: fine-tune a pruned model on an SGR corpus (or the corpus's original answers) with LoRA / QLoRA, then
merge the adapter into the pruned model. Ray-free; `prunelab.distributed.train` runs the same trainer on Ray Train."""
