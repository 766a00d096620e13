import sys

from lst_train.cli import main

sys.exit(main())
