"""The paper's best cytoplasm method on a GPU: DenseNet121 U-Net, paper settings, bf16 compute.

python -m jaxseg.train --config configs/paper_densenet121_cytoplasm.py [--batch-size 64 ...]
"""

from jaxseg.configs import paper


def get_config():
  return paper.get_config().replace(backbone="densenet121", target="cytoplasm", precision="bf16")
