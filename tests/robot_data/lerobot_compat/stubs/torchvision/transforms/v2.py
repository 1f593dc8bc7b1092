"""Names LeRobot's transforms module imports; the compatibility check applies no transforms."""


class Transform:
    def __init__(self, *args, **kwargs) -> None:
        raise NotImplementedError("image transforms are not available in the torchvision stub")


ColorJitter = Compose = RandomAffine = RandomResizedCrop = Resize = Transform
functional = None
