from fastapi import FastAPI

app = FastAPI(title="OPEVA API")


@app.get("/health")
def health() -> dict:
    return {"status": "ok"}
