"""Compress a user's own trained network: BlockSwap on a pretrained torchvision or timm ResNet and a
folder of the user's images, from one command (`blockswap compress`, pipeline.py)."""
