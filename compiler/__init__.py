"""The compiler: numpy only, never torch.

From a model's shapes (and, for a command stream, its integer Monarch factors) to placed, scheduled and encoded
CIM commands and their cost:

* :mod:`compiler.geometry`: Monarch block geometry (:func:`monarch_shape`).
* :mod:`compiler.place`: placement of every matmul's blocks onto crossbar arrays (one strategy per module).
* :mod:`compiler.schedule`: activation order, ADC settings and barriers.
* :mod:`compiler.program`: the command stream of a whole model.
* :mod:`compiler.quant`: integer weights and the exact integer Monarch product (the reference).
* :mod:`compiler.cost`: latency, energy and utilisation.
* :mod:`compiler.stream_inputs`: the seeded input vectors of a command stream.
"""
