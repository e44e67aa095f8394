"""The models' names, for settings to check against without building anything.

``unet`` is the paper's plain U-Net; every encoder name is a U-Net decoder on a ported Keras
encoder of `jaxseg.models.backbones`, in the paper's order (its Tables 1 and 2).
"""

ENCODERS = ("vgg19", "resnet50", "mobilenet", "efficientnetb2", "densenet121")
MODELS = ("unet", *ENCODERS)
# How each decoder block doubles the resolution: the paper's 2x2 transposed conv (its Figure 3),
# or segmentation_models' nearest upsampling.
DECODERS = ("paper", "smp")
UNET_DEPTHS = (4, 5)  # the plain U-Net's poolings: the classic U-Net's, the paper's
# Forms of the convolutions and BatchNorm (`jaxseg.models.kernels`): XLA's own, or tuned for its
# CPU backend.
KERNELS = ("xla", "cpu")
