%% Evaluated by bench/broker-probe.ts through `rabbitmqctl eval` (RabbitMQ
%% 3.10's quorum queues; the at-sign placeholders are filled in first). It
%% looks the quorum queue up in vhost "/" and has the probe create the output
%% file, and returns ok, or {error, Why} without a probe left. Then a process
%% inside the broker, every INTERVAL ms until the stop file exists or
%% MAX_MS have passed, asks the queue for its ready messages and, per
%% consumer, its status, deliveries checked out (unsettled) and credit
%% left, and appends one line to the output file:
%%   ms_since_epoch reply_us ready consumer...   consumer = status:checked_out:credit
%% then "end". The reply time is how long the queue's own process took to
%% answer: a backlog there shows in it. Read-only: a local query of the
%% state machine, nothing is written to the queue's log.
begin
  Out = "@OUT@",
  Stop = "@STOP@",
  QName = rabbit_misc:r(<<"/">>, queue, <<"@QUEUE@">>),
  Deadline = erlang:monotonic_time(millisecond) + @MAX_MS@,
  Consumers = fun(St) ->
    Maps = [E || E <- tuple_to_list(St), is_map(E), map_size(E) > 0,
                 lists:all(fun(V) -> is_tuple(V) andalso tuple_size(V) >= 6 andalso element(1, V) =:= consumer end, maps:values(E))],
    case Maps of
      [M | _] -> [{element(3, C), map_size(element(5, C)), element(6, C)} || C <- maps:values(M), is_map(element(5, C))];
      [] -> []
    end
  end,
  Query = fun(St) -> {maps:get(num_ready_messages, rabbit_fifo:overview(St), -1), Consumers(St)} end,
  Found = case rabbit_amqqueue:lookup(QName) of
    {ok, Q0} ->
      case amqqueue:get_type(Q0) of
        rabbit_quorum_queue -> {ok, amqqueue:get_pid(Q0)};
        Type -> {error, {not_a_quorum_queue, Type}}
      end;
    Other -> {error, {lookup, Other}}
  end,
  case Found of
    {ok, Server} ->
      Parent = self(),
      %% A raw file belongs to the process that opened it: the probe opens
      %% its own, exclusively (never a file or link someone else put there).
      Probe = spawn(fun() ->
        case file:open(Out, [write, exclusive, raw, binary]) of
          {ok, Fd} ->
            Parent ! {self(), ok},
            Loop = fun Loop() ->
              %% It also ends once its file is gone (the bench gave up on it)
              %% or its queue is (the bench deleted the daemon's queues).
              case filelib:is_file(Stop) orelse not filelib:is_file(Out) orelse erlang:monotonic_time(millisecond) > Deadline of
                true -> file:write(Fd, <<"end", 10>>);
                false ->
                  T0 = erlang:monotonic_time(microsecond),
                  case catch ra:local_query(Server, Query, 2000) of
                    {ok, {_, {Ready, Cs}}, _} ->
                      Us = erlang:monotonic_time(microsecond) - T0,
                      Line = [integer_to_list(os:system_time(millisecond)), 32, integer_to_list(Us), 32, integer_to_list(Ready),
                              [[32, atom_to_list(S), 58, integer_to_list(N), 58, integer_to_list(C)] || {S, N, C} <- Cs, is_atom(S), is_integer(C)], 10],
                      case file:write(Fd, Line) of
                        ok -> timer:sleep(@INTERVAL@), Loop();
                        _ -> ok
                      end;
                    _ -> file:write(Fd, <<"end", 10>>)
                  end
              end
            end,
            Loop(),
            file:close(Fd);
          {error, Why} -> Parent ! {self(), {error, {open, Why}}}
        end
      end),
      receive {Probe, Started} -> Started after 10000 -> {error, probe_did_not_answer} end;
    Error -> Error
  end
end.
