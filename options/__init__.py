"""Command-line options: BaseOptions holds the shared flags, TrainOptions and TestOptions the rest."""
