"""rltrain: train and track a keras-rl2 DQN agent from a Hydra-composed config."""
