"""MSA kernels: Triton implementations with a pure-torch reference beside each one.

Imports only torch and triton.
"""
