"""Standard roots (images): `prepare` makes a root boot-and-sync capable, `publish` puts its kernel
and initrd into the TFTP tree."""

from clustcontrol.image.common import ImageResult
from clustcontrol.image.prepare import prepare_image
from clustcontrol.image.publish import publish_image

__all__ = ["ImageResult", "prepare_image", "publish_image"]
