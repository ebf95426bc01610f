"""The embedded digits architectures (small enough to train on a CPU in minutes).

All take ``(N, 1, 28, 28)`` normalised input and return 10 logits. The two CNNs are written
here: layer names are chosen to read well in the dashboard's layer picker, and every ReLU is its
own module and not in-place, so hooks on any layer see exactly one call per forward.

The vision transformer is timm's own :class:`~timm.models.vision_transformer.VisionTransformer`
(not a copy), so its module names (``patch_embed.proj``, ``blocks.i.attn.proj``,
``blocks.i.mlp.act``, ``head``) are the ones every timm ViT has, and what the token-layer support
of the pages is written against applies to it unchanged.
"""

from __future__ import annotations

from typing import Any

from torch import nn

#: The digits ViT's configuration (timm ``VisionTransformer`` keywords): 7×7 = 49 patch tokens of
#: 4×4 pixels plus a class token, 4 pre-norm blocks of width 64 with 4 heads and an MLP of 256
#: hidden units (GELU), the class token's final state read by the linear head. About 205k
#: parameters (0.8 MB as float32).
DIGITS_VIT_CONFIG: dict[str, Any] = {
    "img_size": 28,
    "patch_size": 4,
    "in_chans": 1,
    "embed_dim": 64,
    "depth": 4,
    "num_heads": 4,
    "mlp_ratio": 4.0,
    "global_pool": "token",
    "drop_path_rate": 0.1,  # stochastic depth while training; the identity in eval mode
}


def digits_vit(num_classes: int = 10) -> nn.Module:
    """The embedded digits vision transformer: timm's VisionTransformer with :data:`DIGITS_VIT_CONFIG`."""
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(num_classes=num_classes, **DIGITS_VIT_CONFIG)


class DigitsCNN(nn.Module):
    """conv(1→16) · relu · pool · conv(16→32) · relu · pool · conv(32→64) · relu · GAP... fc.

    28 → 14 → 7 spatially; the first convolution has 16 5×5 filters, big enough to be drawn as a
    readable filter grid (the fragile/robust first-layer filters view).
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=5, padding=2),  # features.0
            nn.ReLU(),
            nn.MaxPool2d(2),  # 14×14
            nn.Conv2d(16, 32, kernel_size=3, padding=1),  # features.3
            nn.ReLU(),
            nn.MaxPool2d(2),  # 7×7
            nn.Conv2d(32, 64, kernel_size=3, padding=1),  # features.6
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(
            nn.Linear(64, 64),  # classifier.0
            nn.ReLU(),
            nn.Linear(64, num_classes),  # classifier.2
        )

    def forward(self, x):
        return self.classifier(self.flatten(self.pool(self.features(x))))


class BasicBlock(nn.Module):
    """ResNet basic block: conv-bn-relu-conv-bn, plus identity or 1×1 projection, then relu."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class DigitsResNet(nn.Module):
    """A small ResNet: stem conv-bn-relu (16), three stages of two basic blocks (16, 32, 64).

    Names follow torchvision's ResNet (``conv1``, ``bn1``, ``layer1.0.conv1``, ``fc``) so the
    same layer vocabulary works on the embedded model and on resnet18.
    """

    def __init__(self, num_classes: int = 10, widths: tuple[int, int, int] = (16, 32, 64)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        self.layer1 = nn.Sequential(BasicBlock(widths[0], widths[0]), BasicBlock(widths[0], widths[0]))
        self.layer2 = nn.Sequential(BasicBlock(widths[0], widths[1], 2), BasicBlock(widths[1], widths[1]))
        self.layer3 = nn.Sequential(BasicBlock(widths[1], widths[2], 2), BasicBlock(widths[2], widths[2]))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(widths[2], num_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.flatten(self.avgpool(x)))
