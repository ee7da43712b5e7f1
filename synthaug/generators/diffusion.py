"""ddpm: a small class-conditional diffusion model (UNet, classifier-free guidance, DDIM sampling)."""
