"""msa-lsp inference worker: model loading, repository KV cache, MSA selection, sampling and the IPC server.

Knows nothing about LSP. `inference.protocol` is the only module the language server imports.
"""
