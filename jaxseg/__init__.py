"""jaxseg: U-Net segmentation of Pap-smear images, in JAX and Flax."""

from jaxseg.hugepages import rerun_with_huge_pages

rerun_with_huge_pages()  # only in jaxseg's own commands; see jaxseg.hugepages
