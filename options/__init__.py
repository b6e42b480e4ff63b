"""Command-line options: BaseOptions holds the shared flags; TrainOptions, TestOptions and EvaluateOptions the rest."""
