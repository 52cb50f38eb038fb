"""msa-lsp language server: workspace index, diagnostics, refactors and the client side of the worker.

Never imports torch, triton or kernels: the server starts fast and works without a GPU or a model.
"""

__version__ = "0.1.0"
