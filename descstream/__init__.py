"""descstream: streaming, audience-aware product descriptions (Faust + Triton + Redis).

This package holds the platform spine shared by the three concern packages:
configuration (`config`), the wire contracts (`schemas`), the embedded local
stack (`stack`) and the `descstream` command line (`cli`).
"""

__version__ = "0.1.0"
