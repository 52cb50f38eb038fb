"""Training the bundled model: corpus building, tokenizer, parallel-layout batches, the MSA training model, export.

Nothing here is imported by the worker at serving time; it needs torch and tokenizers only when run.
"""
