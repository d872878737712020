"""Training: content points -> synthetic pairs -> gates -> split -> LoRA SFT."""
