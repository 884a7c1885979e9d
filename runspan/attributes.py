"""Every span attribute and event name runspan writes, and the SQL column that holds each.

One spelling for the tracer that writes them, the row builder that reads them into columns,
and replay, which puts them back. This module imports nothing, so every part can use it.
Names follow OpenTelemetry's GenAI and exception conventions where they have one, OpenInference
for content (``input.value``), and LangChain's and LangGraph's own words otherwise.
"""

# --- LangChain: the run a span is -------------------------------------------------------------
RUN_ID = "langchain.run_id"
PARENT_RUN_ID = "langchain.parent_run_id"
RUN_TYPE = "langchain.run_type"
TAGS = "langchain.tags"
METADATA = "langchain.metadata"  # JSON text of the application's metadata

# --- Who and which conversation (OpenTelemetry's session and user attributes) ----------------
SESSION_ID = "session.id"  # the conversation a run belongs to
USER_ID = "user.id"

# --- runspan: how a run ended, and runs with no known parent ---------------------------------
ORPHAN = "runspan.orphan"
UNFINISHED = "runspan.unfinished"
UNFINISHED_REASON = "runspan.unfinished.reason"  # cancelled, abandoned, root_ended, expired

# --- LangGraph --------------------------------------------------------------------------------
GRAPH_NODE = "langgraph.node"  # from the metadata LangGraph gives every run of a node
ATTEMPT = "langgraph.attempt"  # a node's attempt under a RetryPolicy, 2 and up
INTERRUPTED = "langgraph.interrupted"  # paused by interrupt(): the node, and its graph's root
RESUMES_TRACE = "langgraph.resumes_trace_id"  # the trace a Command(resume=...) continues

# --- Content (OpenInference's names), with their mime types ---------------------------------
INPUT_VALUE = "input.value"
INPUT_MIME_TYPE = "input.mime_type"
OUTPUT_VALUE = "output.value"
OUTPUT_MIME_TYPE = "output.mime_type"
JSON_MIME = "application/json"
TEXT_MIME = "text/plain"  # content cut at its cap, no longer JSON

# --- OpenTelemetry GenAI --------------------------------------------------------------------
OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
LEGACY_PROVIDER = "gen_ai.system"  # read from other instrumentations, never written
REQUEST_MODEL = "gen_ai.request.model"
REQUEST_TEMPERATURE = "gen_ai.request.temperature"
REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
REQUEST_TOP_P = "gen_ai.request.top_p"
REQUEST_TOP_K = "gen_ai.request.top_k"
REQUEST_FREQUENCY_PENALTY = "gen_ai.request.frequency_penalty"
REQUEST_PRESENCE_PENALTY = "gen_ai.request.presence_penalty"
REQUEST_SEED = "gen_ai.request.seed"
REQUEST_STOP_SEQUENCES = "gen_ai.request.stop_sequences"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_ID = "gen_ai.response.id"
FINISH_REASONS = "gen_ai.response.finish_reasons"
TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"  # seconds, to any chunk
TIME_TO_FIRST_TOKEN = "gen_ai.response.time_to_first_token"  # seconds, to the first content
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
CACHE_READ_TOKENS = "gen_ai.usage.cache_read.input_tokens"
CACHE_CREATION_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
REASONING_TOKENS = "gen_ai.usage.reasoning.output_tokens"
TOOL_NAME = "gen_ai.tool.name"
TOOL_CALL_ID = "gen_ai.tool.call.id"
TOOL_DESCRIPTION = "gen_ai.tool.description"
TOOL_TYPE = "gen_ai.tool.type"
TOOL_DEFINITIONS = "gen_ai.tool.definitions"  # JSON text of the tools offered to a model
AGENT_NAME = "gen_ai.agent.name"
# Content, as JSON text in the shapes of the conventions' JSON schemas (runspan.tracer.messages):
# a model run's messages, a tool run's arguments and result, a retriever's query and documents.
# A run carries these instead of input.value/output.value: one copy of its content.
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
TOOL_CALL_ARGUMENTS = "gen_ai.tool.call.arguments"
TOOL_CALL_RESULT = "gen_ai.tool.call.result"
RETRIEVAL_QUERY = "gen_ai.retrieval.query.text"
RETRIEVAL_DOCUMENTS = "gen_ai.retrieval.documents"

# --- Errors, on the span and on its events ---------------------------------------------------
ERROR_TYPE = "error.type"
EXCEPTION_TYPE = "exception.type"
EXCEPTION_MESSAGE = "exception.message"
EXCEPTION_STACKTRACE = "exception.stacktrace"
EXCEPTION_ESCAPED = "exception.escaped"
RETRY_ATTEMPT = "retry.attempt"

# --- Event names ------------------------------------------------------------------------------
EXCEPTION_EVENT = "exception"
FIRST_CHUNK_EVENT = "gen_ai.first_chunk"
CONTROL_FLOW_EVENT = "langgraph.control_flow"

# --- The resource -----------------------------------------------------------------------------
SERVICE_NAME = "service.name"

# --- Keys LangGraph puts in every run's metadata (read, never written) ---------------------
NODE_KEY = "langgraph_node"
TASK_KEY = "langgraph_checkpoint_ns"  # the attempts of a task share it
THREAD_KEY = "thread_id"  # from the run's configurable

#: The attributes a run's content travels in, (input, output), by run type; runs of any other
#: type use ``input.value``/``output.value``. The row builder stores either pair in the
#: ``inputs``/``outputs`` columns, and replay puts them back under the names for the run's type.
CONTENT_BY_RUN_TYPE: dict[str, tuple[str, str]] = {
    "llm": (INPUT_MESSAGES, OUTPUT_MESSAGES),
    "tool": (TOOL_CALL_ARGUMENTS, TOOL_CALL_RESULT),
    "retriever": (RETRIEVAL_QUERY, RETRIEVAL_DOCUMENTS),
}

#: The attributes whose values the ``runs`` table keeps in a column of their own, by column.
#: The row builder takes them out of the span's attributes into these columns (converting
#: where the column's unit or type differs), and replay puts them back under these names.
COLUMNS: dict[str, str] = {
    RUN_ID: "run_id",
    PARENT_RUN_ID: "parent_run_id",
    RUN_TYPE: "run_type",
    TAGS: "tags",
    METADATA: "metadata",
    INPUT_VALUE: "inputs",
    OUTPUT_VALUE: "outputs",
    INPUT_TOKENS: "input_tokens",
    OUTPUT_TOKENS: "output_tokens",
    CACHE_READ_TOKENS: "cache_read_tokens",
    CACHE_CREATION_TOKENS: "cache_creation_tokens",
    REASONING_TOKENS: "reasoning_tokens",
    TIME_TO_FIRST_TOKEN: "ttft_ms",
    TIME_TO_FIRST_CHUNK: "first_chunk_ms",
    UNFINISHED_REASON: "unfinished_reason",
    GRAPH_NODE: "langgraph_node",
    ATTEMPT: "attempt",
    RESUMES_TRACE: "resumes_trace_id",
    SESSION_ID: "session_id",
    USER_ID: "user_id",
}
