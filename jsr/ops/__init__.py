"""jnp image operations: MATLAB imresize, colour conversions, blur kernels and degradations."""
