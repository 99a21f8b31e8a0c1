"""Loading and running models: ``Model``, ``load`` and the executors behind them."""
