"""Meta-learn an INR initialization (MAML with learned inner learning rates; the paper's trainMetaSiren.py,
same flags) on DIV2K, CelebA or any folder of images under --data_root; writes
<exp_root>/maml/MAML_.../model_maml.pth and maml_obj.pth.

    python image_compression/trainMetaSiren.py --data_root data --maml_dataset DIV2K --maml_epochs 30
"""
import sys

from inrcompress.tools.train_meta_siren import main

if __name__ == "__main__":
    sys.exit(main())
