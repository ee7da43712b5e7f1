"""GANs: a shared adversarial training step (DiffAugment, EMA), dcgan, cgan, infogan."""
