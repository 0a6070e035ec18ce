import time

async def handler():
    time.sleep(1)  # prodaudit: ignore[C5] startup only
    # prodaudit: ignore[C5, F1, blocking-call-in-async]
    time.sleep(2)
    x = 1  # noqa: E501  # prodaudit: ignore[*]
    y = "# prodaudit: ignore[]"
    z = 3  # prodaudit:ignore[c5]
