"""jaxseg: U-Net segmentation of Pap-smear images, in JAX and Flax.

Importing it changes nothing in the process; the commands (``python -m jaxseg.NAME``) set what
they need while they run (`jaxseg.cli`).
"""
