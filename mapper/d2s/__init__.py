"""Dense-to-sparse (D2S): Monarch factors for every weight matmul of a transformer."""

from mapper.d2s.monarch import MonarchLinear, MonarchShape, monarch_forward, monarch_shape, monarch_to_dense

__all__ = ["MonarchLinear", "MonarchShape", "monarch_forward", "monarch_shape", "monarch_to_dense"]
