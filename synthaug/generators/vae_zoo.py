"""The VAE family of the zoo: fc-vae, conv-vae, beta-vae, msssim-vae, joint-vae, vae-gan."""
