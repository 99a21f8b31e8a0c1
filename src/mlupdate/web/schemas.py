"""The JSON shapes of the app's API (they appear, with their descriptions, in ``/docs`` and ``/openapi.json``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ErrorOut(BaseModel):
    """Every error the API answers: a sentence saying what is wrong and how to fix it."""

    detail: str = Field(description="What went wrong and what to do about it.")


class Prediction(BaseModel):
    """The model's answer for one photo."""

    label: str = Field(description="The predicted class label, e.g. `Dog`.")
    probabilities: dict[str, float] = Field(description="Probability of every class label (they sum to 1).")
    personalized: bool = Field(description="Whether the personalised (retrained) model answered.")


class ExampleOut(BaseModel):
    """A labelled photo waiting for the next Train."""

    id: str = Field(description="Identifier, used to remove the example.")
    label: str = Field(description="The label the user gave.")
    name: str = Field(description="The uploaded file's name (or the sample's).")
    added: float = Field(description="When it was added (seconds since the epoch).")
    image_url: str = Field(description="Where the stored photo can be fetched.")


class ExampleList(BaseModel):
    """The pending training examples."""

    count: int = Field(description="How many examples are pending.")
    counts: dict[str, int] = Field(description="Pending examples per label.")
    examples: list[ExampleOut]


class TrainParameters(BaseModel):
    """Optional overrides of the model's update parameters for one Train (within the ranges the model allows)."""

    epochs: int | None = Field(default=None, ge=1, le=1000, description="Number of passes over the examples.")
    learning_rate: float | None = Field(default=None, gt=0, description="SGD/Adam learning rate.")

    def overrides(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class TrainingStatus(BaseModel):
    """The state of the latest Train."""

    state: Literal["idle", "running", "completed", "failed"] = Field(
        description="`idle` (no Train since the server started), `running`, `completed` or `failed`.")
    job: int | None = Field(default=None, description="Number of the Train since the server started.")
    examples: int | None = Field(default=None, description="How many photos it trains on.")
    epochs: int | None = Field(default=None, description="How many epochs it runs.")
    epoch: int | None = Field(default=None, description="Epochs finished so far.")
    loss: float | None = Field(default=None, description="Loss after the last finished epoch.")
    losses: list[float] = Field(default_factory=list, description="Loss after each finished epoch.")
    error: str | None = Field(default=None, description="Why it failed.")
    started: float | None = Field(default=None, description="Start time (seconds since the epoch).")
    finished: float | None = Field(default=None, description="End time, once finished.")
    duration_s: float | None = Field(default=None, description="Seconds it took (so far).")
    personalized: bool = Field(description="Whether predictions use a personalised model now.")


class ModelInfo(BaseModel):
    """The model the app serves."""

    labels: list[str] = Field(description="Class labels.")
    personalized: bool = Field(description="Whether the personalised model is in use.")
    training: bool = Field(description="Whether a Train is running.")
    source: str = Field(description="The original model file.")
    image_input: str = Field(description="Name of the model's image input.")
    label_input: str = Field(description="Name of the training input holding the label.")
    image_size: list[int] | None = Field(description="Width and height the model takes.")
    update_parameters: dict[str, Any] = Field(description="Default update parameters (epochs, learning_rate, ...).")
    short_description: str = Field(description="The model's own description.")
    trained: dict[str, Any] | None = Field(description="About the personalised model: when, from how many photos.")
    warning: str | None = Field(description="A problem found at start-up (e.g. a personalised model ignored).")


class ResetOut(BaseModel):
    """The answer to a reset."""

    reset: bool = Field(description="Whether a personalised model existed and was deleted.")
    personalized: bool = Field(description="Always false after a reset.")
