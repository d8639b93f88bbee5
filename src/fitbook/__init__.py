"""fitbook: the tested library behind the book *Customizing training in Keras*.

Importing the package first imports TensorFlow and Keras without their start-up
noise on stderr (see :mod:`fitbook.tf_noise`); every chapter starts with it.
"""

from fitbook.tf_noise import import_tensorflow_quietly

import_tensorflow_quietly()

__version__ = "0.1.0"
