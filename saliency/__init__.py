"""saliency: a pretrained class-conditional GAN turned into a salient-object detector."""

__version__ = "0.1.0"
