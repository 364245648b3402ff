"""Getting a model: torchvision architectures and weights, model files, labels, the model
repository, preprocessing and the runtime plan. No web framework, no Prometheus."""
