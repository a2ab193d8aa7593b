"""Model shapes. `full` is the published architecture; `tiny` runs on 2 CPU cores in seconds."""

PRESETS = {
    "full": {
        "dnabert": dict(num_layers=12, hidden_size=768, num_heads=12, intermediate_size=3072, vocab_size=4096),
        "esm2": dict(num_layers=36, embed_dim=2560, attention_heads=40),
        "classifier": dict(input_dim=768 + 2560, hidden_dim=512, num_class=2),
    },
    "tiny": {
        "dnabert": dict(num_layers=2, hidden_size=96, num_heads=12, intermediate_size=128, vocab_size=4096),
        "esm2": dict(num_layers=3, embed_dim=64, attention_heads=4),
        "classifier": dict(input_dim=96 + 64, hidden_dim=64, num_class=2),
    },
}
