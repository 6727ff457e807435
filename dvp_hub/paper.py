"""The paper's constants (Kim et al. 2018, section 5), defined once: every other module reads them from here or,
for a trained target, from its generator's config."""

TEMPORAL_WINDOW = 11  # N_w: frames in the generator's space-time conditioning stack, the current one last
NUM_CHANNELS = 9  # conditioning channels a frame: diffuse rendering, correspondence image, eye-gaze map (RGB each)
LAMBDA_L1 = 100.0  # weight of the L1 term against the cGAN term
LEARNING_RATE = 2e-4  # Adam, both networks
ADAM_BETA1 = 0.5
