"""The torch parts of training: the dense model, the feature diversity loss, the SGD loop,
Q-SENN's trainable normalisation and the pretrained backbones."""
