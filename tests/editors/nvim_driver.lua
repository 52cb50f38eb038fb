-- Drives a real headless Neovim through one scenario against the real msa-lsp server and writes
-- what it observed as JSON (pytest asserts on it). Runs inside Neovim's main loop (`-c luafile`),
-- as a coroutine, so typed keys (nvim_input) go through insert mode and its autocommands as a
-- user's would. Spec and output paths come from $MSA_NVIM_SPEC and $MSA_NVIM_OUT.
local spec = vim.json.decode(table.concat(vim.fn.readfile(os.getenv("MSA_NVIM_SPEC")), "\n"))
local out_path = os.getenv("MSA_NVIM_OUT")

vim.opt.runtimepath:prepend(spec.plugin)
vim.opt.swapfile = false
vim.opt.shortmess:append("F")
local msa = require("msa_lsp")
msa.setup({
  cmd = { spec.python, "-P", "-m", "lsp", "serve" },
  settings = spec.settings or vim.empty_dict(),
  inline = { debounce_ms = 30 },
})

local co
local function sleep(ms)
  vim.defer_fn(function() assert(coroutine.resume(co)) end, ms)
  coroutine.yield()
end

local function wait_until(timeout_ms, what, cond)
  local started = vim.uv.now()
  while true do
    local value = cond()
    if value then return value end
    if vim.uv.now() - started > timeout_ms then error("timed out waiting for " .. what, 0) end
    sleep(25)
  end
end

local function open(rel)
  vim.cmd.edit(vim.fn.fnameescape(spec.workspace .. "/" .. rel))
  local buf = vim.api.nvim_get_current_buf()
  local client = wait_until(20000, "the msa_lsp client to attach to " .. rel, function()
    local c = msa.client(buf)
    return c and c.initialized and c
  end)
  return buf, client
end

local function wait_index_ready()
  local status = require("msa_lsp.status")
  wait_until(20000, "msa/status with index ready", function()
    return status.latest and status.latest.index.state == "ready"
  end)
end

local function wait_worker_ready()
  local status = require("msa_lsp.status")
  wait_until(90000, "msa/status with the worker ready", function()
    local w = status.latest and status.latest.worker
    if w and w.state == "error" then error("worker error: " .. (w.message or ""), 0) end
    return w and w.state == "ready"
  end)
end

local function buffer_text(buf)
  return table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, false), "\n")
end

local scenarios = {}

function scenarios.attach(result)
  local buf, client = open(spec.file)
  wait_index_ready()
  result.client_name = client.name
  result.root_dir = client.root_dir
  result.offset_encoding = client.offset_encoding
  result.statusline = msa.statusline()
  result.status = require("msa_lsp.status").latest
  result.supports = {}
  for _, method in ipairs({ "textDocument/rename", "textDocument/completion", "textDocument/inlineCompletion" }) do
    result.supports[method] = client:supports_method(method, buf)
  end
  -- :MsaReindex goes to the server's msa.reindex; the statusline sees indexing, then ready again
  local states = {}
  vim.api.nvim_create_autocmd("User", { pattern = "MsaStatus", callback = function(ev)
    table.insert(states, ev.data.index.state)
  end })
  vim.cmd("MsaReindex")
  wait_until(20000, "indexing then ready after :MsaReindex", function()
    local indexing = vim.fn.index(states, "indexing")
    return indexing >= 0 and vim.list_contains(vim.list_slice(states, indexing + 1), "ready")
  end)
  result.reindex_states = states
  vim.cmd("checkhealth msa_lsp")
  result.health = vim.api.nvim_buf_get_lines(0, 0, -1, false)
end

function scenarios.diagnostics(result)
  result.diagnostics = {}
  for _, rel in ipairs(spec.files) do
    local buf = open(rel)
    local found = wait_until(20000, "diagnostics on " .. rel, function()
      local d = vim.diagnostic.get(buf)
      return #d > 0 and d
    end)
    result.diagnostics[rel] = {}
    for _, d in ipairs(found) do
      table.insert(result.diagnostics[rel], { lnum = d.lnum, col = d.col, severity = d.severity, message = d.message,
        source = d.source, code = d.code })
    end
  end
end

function scenarios.completion(result)
  local buf, client = open(spec.file)
  wait_index_ready()
  local last = vim.api.nvim_buf_line_count(buf)
  vim.api.nvim_buf_set_lines(buf, last, last, false, { spec.type })
  vim.api.nvim_win_set_cursor(0, { last + 1, #spec.type })
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  local answer = client:request_sync("textDocument/completion", params, 10000, buf)
  if not answer then error("completion request timed out", 0) end
  if answer.err then error("completion failed: " .. answer.err.message, 0) end
  local items = answer.result and (answer.result.items or answer.result) or {}
  result.labels = vim.tbl_map(function(item) return item.label end, items)
end

function scenarios.rename(result)
  local buf = open(spec.file)
  wait_index_ready()
  vim.api.nvim_win_set_cursor(0, { spec.line + 1, spec.col })
  vim.lsp.buf.rename(spec.new_name)
  local function buffer_of(rel) return vim.fn.bufnr(spec.workspace .. "/" .. rel) end
  wait_until(20000, "the rename to reach " .. table.concat(spec.files, ", "), function()
    for _, rel in ipairs(spec.files) do
      local other = buffer_of(rel)
      if other == -1 or not vim.api.nvim_buf_is_loaded(other) or not buffer_text(other):find(spec.new_name, 1, true) then
        return false
      end
    end
    return true
  end)
  result.buffers, result.modified, result.disk = {}, {}, {}
  for _, rel in ipairs(spec.files) do
    local other = buffer_of(rel)
    result.buffers[rel] = vim.api.nvim_buf_get_lines(other, 0, -1, false)
    result.modified[rel] = vim.bo[other].modified
    result.disk[rel] = vim.fn.readfile(spec.workspace .. "/" .. rel)
  end
  result.cursor_buffer = buf
end

function scenarios.inline(result)
  local buf, client = open(spec.file)
  wait_index_ready()
  result.supports_inline = client:supports_method("textDocument/inlineCompletion", buf)
  if not result.supports_inline then error("the server does not offer textDocument/inlineCompletion", 0) end
  wait_worker_ready()
  vim.api.nvim_win_set_cursor(0, { spec.line + 1, 0 })
  vim.api.nvim_input("A" .. spec.type)
  local ns = require("msa_lsp.inline").namespace
  local marks = wait_until(spec.timeout_ms or 60000, "a ghost-text extmark", function()
    local m = vim.api.nvim_buf_get_extmarks(buf, ns, 0, -1, { details = true })
    return #m > 0 and m
  end)
  local details = marks[1][4]
  result.ghost = {
    row = marks[1][2], col = marks[1][3],
    text = details.virt_text and details.virt_text[1][1] or "",
    virt_lines = vim.tbl_map(function(l) return l[1][1] end, details.virt_lines or {}),
    hl = details.virt_text and details.virt_text[1][2],
  }
  result.line_before = vim.api.nvim_buf_get_lines(buf, spec.line, spec.line + 1, false)[1]
  local before = buffer_text(buf)
  vim.api.nvim_input("<Tab>")
  wait_until(5000, "the accepted text in the buffer", function() return buffer_text(buf) ~= before end)
  result.lines_after = vim.api.nvim_buf_get_lines(buf, spec.line, spec.line + 1 + #result.ghost.virt_lines, false)
  result.cursor_after = vim.api.nvim_win_get_cursor(0)
  result.buffer_after = buffer_text(buf)
  result.mode = vim.api.nvim_get_mode().mode
end

--- Records the inlineCompletion requests the plugin sends and the ones it cancels.
local function spy(client)
  local seen = { requests = 0, ids = {}, characters = {}, cancelled = {} }
  local request, cancel_request = client.request, client.cancel_request
  client.request = function(self, method, params, handler, bufnr)
    local ok, id = request(self, method, params, handler, bufnr)
    if method == "textDocument/inlineCompletion" then
      seen.requests = seen.requests + 1
      table.insert(seen.ids, id)
      table.insert(seen.characters, params.position.character)
    end
    return ok, id
  end
  client.cancel_request = function(self, id)
    table.insert(seen.cancelled, id)
    return cancel_request(self, id)
  end
  return seen, function() client.request, client.cancel_request = request, cancel_request end
end

function scenarios.debounce(result)
  local buf, client = open(spec.file)
  wait_index_ready()
  wait_worker_ready()
  vim.api.nvim_win_set_cursor(0, { spec.line + 1, 0 })
  vim.api.nvim_input("A")
  sleep(100)
  local burst, restore = spy(client)
  for _, key in ipairs({ "a", "b", "c", "d", "e" }) do
    vim.api.nvim_input(key)
    sleep(5)
  end
  sleep(300)
  restore()
  result.burst = { requests = burst.requests, last_character = burst.characters[#burst.characters] }
  -- let the burst's request finish, then type once, wait past the client debounce (30 ms) but not
  -- past the server's (150 ms), so the request is in flight when the next key comes
  wait_until(60000, "the burst's answer", function() return require("msa_lsp.inline").visible(buf) end)
  local overlap, restore2 = spy(client)
  vim.api.nvim_input("x")
  wait_until(2000, "the first request", function() return overlap.requests == 1 end)
  vim.api.nvim_input("y")
  wait_until(2000, "the second request", function() return overlap.requests == 2 end)
  restore2()
  result.overlap = overlap
  -- :MsaRestartWorker goes to the server's msa.restartWorker: the worker restarts and is ready again
  local states = {}
  vim.api.nvim_create_autocmd("User", { pattern = "MsaStatus", callback = function(ev)
    table.insert(states, ev.data.worker.state)
  end })
  vim.cmd("MsaRestartWorker")
  wait_until(60000, "the worker to restart and be ready", function()
    local i = math.max(vim.fn.index(states, "starting"), vim.fn.index(states, "restarting"))
    return i >= 0 and vim.list_contains(vim.list_slice(states, i + 1), "ready")
  end)
  result.restart_states = vim.deepcopy(states)
  -- :MsaToggleInline turns ghost text off here and tells the server
  local notify, sent = client.notify, {}
  client.notify = function(self, method, params)
    if method == "workspace/didChangeConfiguration" then table.insert(sent, params) end
    return notify(self, method, params)
  end
  vim.cmd("MsaToggleInline")
  client.notify = notify
  local off, restore3 = spy(client)
  vim.api.nvim_input("z")
  sleep(300)
  restore3()
  result.toggled = { requests = off.requests, sent = sent,
    extmarks = #vim.api.nvim_buf_get_extmarks(buf, require("msa_lsp.inline").namespace, 0, -1, {}) }
end

local function finish(ok, result)
  for _, client in ipairs(vim.lsp.get_clients()) do client:stop() end
  pcall(wait_until, 5000, "clients to stop", function() return #vim.lsp.get_clients() == 0 end)
  vim.fn.writefile({ vim.json.encode(result) }, out_path)
  vim.cmd(ok and "qa!" or "cq!")
end

co = coroutine.create(function()
  local result = { scenario = spec.scenario, nvim = tostring(vim.version()) }
  local run = scenarios[spec.scenario]
  local ok, err = xpcall(function()
    if not run then error("unknown scenario " .. tostring(spec.scenario), 0) end
    run(result)
  end, debug.traceback)
  if not ok then
    result.error = err
    result.lsp_log_tail = vim.fn.filereadable(vim.lsp.get_log_path()) == 1
      and vim.list_slice(vim.fn.readfile(vim.lsp.get_log_path()), math.max(1, #vim.fn.readfile(vim.lsp.get_log_path()) - 30))
      or {}
  end
  finish(ok, result)
end)
vim.schedule(function() assert(coroutine.resume(co)) end)
