--- The server's `msa/status` notification: keeps the latest one and formats it for a statusline
--- (index progress, worker state, cache fill, model). Not here: drawing (users put
--- `require("msa_lsp").statusline()` in their statusline; a `User MsaStatus` autocmd fires on change).
local M = {}

M.latest = nil

local function short_model(model)
  return (model or ""):match("([^/\\]+)[/\\]*$") or model or ""
end

--- Share of the indexed files whose text the worker's KV cache holds (cache.filled counts files
--- synced to the worker); nil before anything is indexed.
function M.cache_fill_percent(status)
  local files = status.index and status.index.files
  if type(status.cache) ~= "table" or type(files) ~= "number" or files <= 0 then
    return nil
  end
  return math.floor(math.max(0, math.min(1, (status.cache.filled or 0) / files)) * 100)
end

--- A one-line summary, e.g. "msa: 120 files · cache 25% · qwen" or "msa: indexing 3/40".
function M.format(status)
  if status == nil then
    return ""
  end
  local index, worker = status.index or {}, status.worker or {}
  local parts = {}
  if index.state == "indexing" then
    table.insert(parts, ("indexing %d/%d"):format(index.done or 0, index.files or 0))
  elseif index.state == "error" then
    table.insert(parts, "index error")
  else
    table.insert(parts, ("%d files"):format(index.files or 0))
  end
  if worker.state == "ready" then
    local fill = M.cache_fill_percent(status)
    if fill then table.insert(parts, ("cache %d%%"):format(fill)) end
    if worker.model and worker.model ~= "" then table.insert(parts, short_model(worker.model)) end
  elseif worker.state == "off" then
    table.insert(parts, "no worker")
  elseif worker.state then
    table.insert(parts, "worker " .. worker.state)
  end
  return "msa: " .. table.concat(parts, " · ")
end

--- Handler for the msa/status notification.
function M.handler(_, params, ctx)
  if type(params) ~= "table" or type(params.index) ~= "table" or type(params.worker) ~= "table" then
    vim.notify("msa_lsp: ignored a malformed msa/status notification", vim.log.levels.DEBUG)
    return
  end
  M.latest = params
  M.client_id = ctx and ctx.client_id
  vim.api.nvim_exec_autocmds("User", { pattern = "MsaStatus", modeline = false, data = params })
  pcall(vim.cmd.redrawstatus)
end

return M
